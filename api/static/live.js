// Live by push: a server-sent event reader over fetch() (EventSource cannot send the bearer
// header; the token stays out of URLs), the connection banner, keyboard shortcuts with a `?`
// help, and a browser notification when an agent asks something.
"use strict";

(() => {
  const { el } = F;
  const streams = new Set();
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // ---- the connection banner -------------------------------------------------------------
  let down = 0;
  F.connection = (ok) => {
    down = ok ? 0 : down + 1;
    let bar = F.$("conn-banner");
    if (!bar) {
      bar = el("div", { id: "conn-banner", class: "conn-banner", role: "status", hidden: true },
        "Lost the connection to Factory: what you see may be out of date. Reconnecting…");
      document.body.prepend(bar);
    }
    bar.hidden = ok;
  };

  F.closeStreams = () => { for (const s of [...streams]) s.close(); };

  function parse(block) {
    const ev = { event: "message", data: [], id: null };
    for (const line of block.split(/\r?\n/)) {
      if (!line || line.startsWith(":")) continue;
      const i = line.indexOf(":");
      const field = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
      if (field === "event") ev.event = value;
      else if (field === "data") ev.data.push(value);
      else if (field === "id") ev.id = value;
    }
    return ev.data.length ? { ...ev, data: ev.data.join("\n") } : null;
  }

  // Reads `path` as server-sent events for as long as the view lives: `on[event](data)` per event.
  // A dropped stream shows the banner and reconnects with Last-Event-ID; `end` closes it for good.
  F.stream = (path, on, from = "") => {
    const ctl = new AbortController();
    let last = from;
    let closed = false;
    const s = { close() { closed = true; ctl.abort(); streams.delete(s); }, get closed() { return closed; }, get last() { return last; } };
    streams.add(s);
    (async () => {
      let wait = 500;
      while (!closed) {
        try {
          const headers = { Accept: "text/event-stream" };
          if (F.token()) headers.Authorization = `Bearer ${F.token()}`;
          if (last) headers["Last-Event-ID"] = last;
          const res = await fetch(path, { headers, signal: ctl.signal, cache: "no-store" });
          if (res.status === 401) { s.close(); F.api("/api/settings/dashboard").catch(() => {}); return; }
          if (res.status === 404 || res.status === 422) {
            s.close();
            if (on.missing) on.missing(res.status);
            return;
          }
          if (!res.ok) throw new Error(`HTTP ${res.status}`);
          F.connection(true);
          wait = 500;
          const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
          let buf = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buf += value;
            let m;
            while ((m = /\r?\n\r?\n/.exec(buf))) {
              const ev = parse(buf.slice(0, m.index));
              buf = buf.slice(m.index + m[0].length);
              if (!ev) continue;
              if (ev.id) last = ev.id;
              const fn = on[ev.event];
              if (fn) {
                try { fn(JSON.parse(ev.data)); } catch (err) { console.warn(err); }
              }
              if (ev.event === "end") { s.close(); return; }
            }
          }
        } catch (err) {
          if (closed) return;
        }
        if (closed) return;
        F.connection(false);
        await sleep(wait);
        wait = Math.min(wait * 2, 4000);
      }
    })();
    return s;
  };

  // ---- notifications ---------------------------------------------------------------------
  const told = new Set();
  F.notifyQuestion = (task) => {
    const q = task && task.pending_question;
    if (!q || told.has(q.id)) return;
    told.add(q.id);
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    const n = new Notification(`Factory: task #${task.id} asks`, { body: q.text.slice(0, 200), tag: `q-${q.id}` });
    n.onclick = () => { window.focus(); location.hash = `#/tasks/${task.id}`; };
  };
  function bell() {
    if (!("Notification" in window) || Notification.permission !== "default") return null;
    return el("button", { type: "button", id: "notify-on", class: "ghost small", onclick: async (e) => {
      await Notification.requestPermission();
      e.target.remove();
    } }, "Notify me of questions");
  }

  // ---- keyboard shortcuts ----------------------------------------------------------------
  const KEYS = [["?", "this help"], ["g t", "tasks"], ["g w", "workflows"], ["n", "new task"], ["/", "search the board"],
    ["j / k", "next / previous card"], ["Esc", "close this help"]];
  function help() {
    let d = F.$("shortcuts");
    if (!d) {
      d = el("dialog", { id: "shortcuts", class: "dialog", "aria-labelledby": "shortcuts-title" },
        el("h2", { id: "shortcuts-title" }, "Keyboard shortcuts"),
        el("dl", { class: "keys" }, KEYS.map(([k, what]) => [el("dt", {}, el("kbd", {}, k)), el("dd", {}, what)])),
        el("div", { class: "row end" }, el("button", { type: "button", onclick: () => d.close() }, "Close")));
      document.body.append(d);
    }
    if (!d.open) d.showModal();
  }
  let pendingG = 0;
  document.addEventListener("keydown", (ev) => {
    const t = ev.target;
    if (ev.ctrlKey || ev.metaKey || ev.altKey || !F.info) return;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    const g = Date.now() - pendingG < 1200;
    pendingG = 0;
    if (ev.key === "?") { ev.preventDefault(); help(); } else if (g && ev.key === "t") F.go("#/tasks");
    else if (g && ev.key === "w") F.go("#/runs");
    else if (ev.key === "g") pendingG = Date.now();
    else if (ev.key === "n") F.go("#/new");
    else if (ev.key === "/" && F.$("filter-text")) { ev.preventDefault(); F.$("filter-text").focus(); } else if (ev.key === "j" || ev.key === "k") {
      const cards = [...document.querySelectorAll(".task-card .task-title")];
      if (!cards.length) return;
      const at = cards.indexOf(document.activeElement);
      const next = ev.key === "j" ? Math.min(at + 1, cards.length - 1) : Math.max(at - 1, 0);
      cards[at < 0 ? 0 : next].focus();
    }
  });
  document.addEventListener("DOMContentLoaded", () => {
    const b = bell();
    if (b) F.$("sign-out").before(b);
    F.$("sign-out").before(el("button", { type: "button", class: "ghost small", id: "help-keys", "aria-label": "Keyboard shortcuts", onclick: help }, "?"));
  });
})();
