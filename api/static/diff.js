// A diff to review: the patch parsed into files and hunks, a file tree, unified and split views
// with line numbers, and a comment on any line that goes to the agent as a follow-up (its next
// round). Code reaches the page as text nodes only.
"use strict";

(() => {
  const { el } = F;

  // files: [{ path, lines: [{ kind: add|del|ctx|hunk, old, new, text }] }]
  F.parsePatch = (patch) => {
    const files = [];
    let f = null;
    let o = 0;
    let n = 0;
    for (const line of patch.split("\n")) {
      if (line.startsWith("diff --git ")) {
        const m = / b\/(.*)$/.exec(line);
        f = { path: m ? m[1] : line.slice(11), lines: [] };
        files.push(f);
        continue;
      }
      if (!f) continue;
      if (line.startsWith("+++ b/")) { f.path = line.slice(6); continue; }
      if (line.startsWith("--- a/") && !f.lines.length) { f.path = line.slice(6); continue; }
      if (line.startsWith("--- ") || line.startsWith("+++ ") || line.startsWith("index ") || /^(new|deleted) file mode|^similarity|^rename |^Binary /.test(line)) continue;
      const h = /^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@(.*)$/.exec(line);
      if (h) { o = Number(h[1]); n = Number(h[2]); f.lines.push({ kind: "hunk", text: line }); continue; }
      if (line.startsWith("+")) f.lines.push({ kind: "add", new: n++, text: line.slice(1) });
      else if (line.startsWith("-")) f.lines.push({ kind: "del", old: o++, text: line.slice(1) });
      else if (line.startsWith(" ")) f.lines.push({ kind: "ctx", old: o++, new: n++, text: line.slice(1) });
    }
    return files;
  };

  // A small hand-written colouring of code lines: strings, comments, numbers and keywords, each
  // piece a text node inside a <span>.
  const KEYWORDS = /\b(def|class|return|if|elif|else|for|while|import|from|as|with|try|except|finally|raise|async|await|function|const|let|var|new|true|false|null|None|True|False|yield|lambda|in|not|and|or|export|type|interface|fn|pub|struct|impl|match)\b/g;
  const TOKENS = /("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`)|(#.*$|\/\/.*$)|(\b\d+(?:\.\d+)?\b)/g;
  function keywords(text) {
    const out = [];
    let last = 0;
    for (const m of text.matchAll(KEYWORDS)) {
      if (m.index > last) out.push(text.slice(last, m.index));
      out.push(el("span", { class: "tok-kw" }, m[0]));
      last = m.index + m[0].length;
    }
    if (last < text.length) out.push(text.slice(last));
    return out;
  }
  F.colourCode = (text) => {
    const out = [];
    let last = 0;
    for (const m of text.matchAll(TOKENS)) {
      if (m.index > last) out.push(...keywords(text.slice(last, m.index)));
      out.push(el("span", { class: m[1] ? "tok-str" : m[2] ? "tok-com" : "tok-num" }, m[0]));
      last = m.index + m[0].length;
    }
    if (last < text.length) out.push(...keywords(text.slice(last)));
    return out;
  };

  const num = (v) => el("td", { class: "ln" }, v === undefined ? "" : String(v));
  const code = (l) => el("td", { class: `code pl-${l.kind}` }, el("span", { class: "sign" }, l.kind === "add" ? "+" : l.kind === "del" ? "-" : " "), ...F.colourCode(l.text));

  function commentCell(taskId, path, line, onSent) {
    const b = el("button", { type: "button", class: "ghost small add-comment", "aria-label": `Comment on ${path} line ${line}` }, "+");
    b.addEventListener("click", () => {
      const row = b.closest("tr");
      if (row.nextSibling && row.nextSibling.classList && row.nextSibling.classList.contains("comment-row")) return;
      const text = el("textarea", { rows: 2, class: "comment-text", "aria-label": `Comment on ${path}:${line}` });
      const err = el("span", { class: "error-text", role: "alert" });
      const send = el("button", { type: "submit", class: "small" }, "Send to the agent");
      const form = el("form", { class: "comment-form" }, text, el("div", { class: "row" }, send, err));
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        if (!text.value.trim()) return;
        send.disabled = true;
        try {
          await F.api(`/api/tasks/${taskId}/follow-up`, { method: "POST", body: { message: text.value, file: path, line, sent_by: F.userName() } });
          form.replaceWith(el("p", { class: "comment-sent" }, `Sent: ${text.value}`));
          onSent();
        } catch (e) { err.textContent = e.message; send.disabled = false; }
      });
      row.after(el("tr", { class: "comment-row" }, el("td", { colspan: 5 }, form)));
      text.focus();
    });
    return el("td", { class: "cm" }, b);
  }

  function unified(f, c) {
    return el("tbody", {}, f.lines.map((l) => l.kind === "hunk"
      ? el("tr", { class: "hunk-row" }, el("td", { colspan: 4, class: "pl-hunk" }, l.text))
      : el("tr", { dataset: { line: l.new ?? "", old: l.old ?? "" } }, num(l.old), num(l.new), code(l),
        l.new !== undefined && c ? commentCell(c.taskId, f.path, l.new, c.onSent) : el("td", { class: "cm" }))));
  }

  function split(f, c) {
    const rows = [];
    const lines = f.lines;
    for (let i = 0; i < lines.length; i++) {
      const l = lines[i];
      if (l.kind === "hunk") { rows.push(el("tr", { class: "hunk-row" }, el("td", { colspan: 5, class: "pl-hunk" }, l.text))); continue; }
      if (l.kind === "ctx") {
        rows.push(el("tr", { dataset: { line: l.new } }, num(l.old), code(l), num(l.new), code(l), c ? commentCell(c.taskId, f.path, l.new, c.onSent) : el("td", {})));
        continue;
      }
      const dels = [];
      const adds = [];
      while (i < lines.length && lines[i].kind === "del") dels.push(lines[i++]);
      while (i < lines.length && lines[i].kind === "add") adds.push(lines[i++]);
      i--;
      for (let k = 0; k < Math.max(dels.length, adds.length); k++) {
        const d = dels[k];
        const a = adds[k];
        rows.push(el("tr", { dataset: { line: a ? a.new : "" } },
          num(d && d.old), d ? code(d) : el("td", { class: "code empty-side" }),
          num(a && a.new), a ? code(a) : el("td", { class: "code empty-side" }),
          a && c ? commentCell(c.taskId, f.path, a.new, c.onSent) : el("td", { class: "cm" })));
      }
    }
    return el("tbody", {}, rows);
  }

  function tree(files, onPick) {
    const root = el("ul", { class: "file-tree", "aria-label": "Changed files" });
    const dirs = new Map();
    for (const f of files) {
      const parts = f.path.split("/");
      const dir = parts.slice(0, -1).join("/");
      let list = root;
      if (dir) {
        if (!dirs.has(dir)) {
          const ul = el("ul", {});
          dirs.set(dir, ul);
          root.append(el("li", { class: "dir" }, el("span", { class: "dir-name" }, `${dir}/`), ul));
        }
        list = dirs.get(dir);
      }
      list.append(el("li", {}, el("a", { href: "#", class: "file-link", onclick: (e) => { e.preventDefault(); onPick(f.path); } }, parts[parts.length - 1],
        el("span", { class: "add-n" }, f.stat && f.stat.additions !== null ? ` +${f.stat.additions}` : ""),
        el("span", { class: "del-n" }, f.stat && f.stat.deletions !== null ? ` −${f.stat.deletions}` : ""))));
    }
    return root;
  }

  // d: DiffPublic; opts: { taskId, onSent, mode } (no taskId: no comments)
  F.reviewDiff = (d, opts) => {
    const files = F.parsePatch(d.patch);
    const stats = new Map(d.files.map((x) => [x.path, x]));
    for (const f of files) f.stat = stats.get(f.path);
    const c = opts.taskId ? opts : null;
    const body = el("div", { class: "diff-body patch", tabindex: "0", "aria-label": "The changes" });
    const draw = () => {
      F.fill(body, files.map((f) => el("section", { class: "diff-file", dataset: { path: f.path } },
        el("h3", { class: "diff-path" }, el("code", {}, f.path)),
        el("div", { class: "table-wrap" }, el("table", { class: `diff-table ${opts.mode}` }, opts.mode === "split" ? split(f, c) : unified(f, c))))));
    };
    const pick = (mode) => { opts.mode = mode; viewBtns.forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.mode === mode))); draw(); };
    const viewBtns = ["unified", "split"].map((m) => el("button", { type: "button", class: "ghost small", id: `diff-${m}`, dataset: { mode: m }, onclick: () => pick(m) }, m));
    const jump = (path) => {
      const sec = [...body.querySelectorAll(".diff-file")].find((s) => s.dataset.path === path);
      if (sec) { sec.scrollIntoView({ block: "start" }); sec.querySelector("h3").setAttribute("tabindex", "-1"); sec.querySelector("h3").focus(); }
    };
    pick(opts.mode || "unified");
    return el("div", { class: "diff review" },
      el("p", { class: "diff-sum" }, `${d.files.length} file${d.files.length === 1 ? "" : "s"} changed on `, el("code", {}, d.branch),
        " against ", el("code", {}, d.base), " ", el("span", { class: "add-n" }, `+${d.additions}`), " ", el("span", { class: "del-n" }, `−${d.deletions}`),
        " ", el("span", { class: "row diff-modes", role: "group", "aria-label": "Diff view" }, viewBtns)),
      el("table", { class: "diff-files" }, el("tbody", {}, d.files.map((f) => el("tr", {},
        el("td", { class: "path" }, f.path),
        el("td", { class: "add-n" }, f.additions === null ? "bin" : `+${f.additions}`),
        el("td", { class: "del-n" }, f.deletions === null ? "" : `−${f.deletions}`))))),
      d.live ? el("p", { class: "note diff-live", id: "diff-live" }, el("span", { class: "badge live-badge" }, "live"),
        ` The agent's work in progress, not pushed yet: its worktree as of ${F.fmtTime(d.as_of)}. It refreshes as the agent edits.`) : null,
      d.note ? el("p", { class: "note", id: "diff-note" }, d.note) : null,
      d.skipped_count ? el("details", { class: "diff-skipped" }, el("summary", {}, `${d.skipped_count} left out of the live diff`),
        el("ul", {}, d.skipped.map((x) => el("li", {}, el("code", {}, x))))) : null,
      d.truncated && !d.live ? el("p", { class: "note" }, "The patch is long: only its beginning is shown.") : null,
      d.truncated && d.live ? el("p", { class: "note" }, "Only part of the worktree is shown (a size, count or time cap was reached).") : null,
      el("div", { class: "diff-grid" }, tree(files, jump), body));
  };
})();
