// The message board page: the live board (server-sent events read with fetch(), so the
// bearer token travels in a header), filters, threads, and the questions waiting for an
// answer. Everything agents write goes into the page as text nodes only, never as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "factory.token";
  const NAME_KEY = "factory.name";
  const PAGE = 50;
  const PENDING_EVERY_MS = 3000;

  const $ = (id) => document.getElementById(id);
  const state = {
    filters: { task_id: "", message_type: "", agent: "", search: "" },
    cursor: 0, // highest message id seen: the stream resumes after it
    oldest: null, // lowest id shown: "load older" pages before it
    shown: new Map(), // id -> <li>
    streamGen: 0,
    streamAbort: null,
    needToken: false,
  };

  class AuthError extends Error {}

  // ---- small DOM helpers (text only) -------------------------------------------------
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function fmtTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    const sameDay = d.toDateString() === new Date().toDateString();
    return sameDay ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" }) : d.toLocaleString();
  }

  // ---- API ---------------------------------------------------------------------------
  function authHeaders() {
    const token = localStorage.getItem(TOKEN_KEY);
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  async function api(path, options = {}) {
    const headers = { Accept: "application/json", ...authHeaders(), ...(options.headers || {}) };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(path, {
      ...options,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      cache: "no-store",
    });
    if (res.status === 401) {
      askToken(localStorage.getItem(TOKEN_KEY) ? "The saved token was refused. Enter the current one." : null);
      throw new AuthError("token needed");
    }
    let data = null;
    try { data = await res.json(); } catch { data = null; }
    if (!res.ok) {
      const detail = data && data.detail ? (typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail)) : res.statusText;
      const err = new Error(detail || `HTTP ${res.status}`);
      err.status = res.status;
      throw err;
    }
    return data;
  }

  function query(extra) {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries({ ...state.filters, ...extra })) {
      if (v !== "" && v !== null && v !== undefined) p.set(k, String(v));
    }
    const s = p.toString();
    return s ? `?${s}` : "";
  }

  // ---- connection status and notes ----------------------------------------------------
  function setConn(kind, text) {
    const node = $("conn-status");
    node.className = `conn conn-${kind}`;
    node.textContent = text;
  }

  function note(text) {
    const n = $("board-note");
    n.textContent = text || "";
    n.hidden = !text;
  }

  // ---- token dialog -------------------------------------------------------------------
  function askToken(reason) {
    state.needToken = true;
    setConn("off", "token needed");
    if (reason) $("token-reason").textContent = reason;
    $("token-input").value = localStorage.getItem(TOKEN_KEY) || "";
    $("name-input").value = localStorage.getItem(NAME_KEY) || "";
    $("token-dialog").hidden = false;
    $("token-input").focus();
  }

  function saveToken(ev) {
    ev.preventDefault();
    const token = $("token-input").value.trim();
    const name = $("name-input").value.trim();
    if (token) localStorage.setItem(TOKEN_KEY, token); else localStorage.removeItem(TOKEN_KEY);
    if (name) localStorage.setItem(NAME_KEY, name); else localStorage.removeItem(NAME_KEY);
    $("token-dialog").hidden = true;
    state.needToken = false;
    reloadAll();
  }

  // ---- messages -----------------------------------------------------------------------
  function messageItem(m, { fresh = false, compact = false } = {}) {
    const type = m.message_type || "info";
    const classes = ["msg", `type-${type}`];
    if (m.to === "user") classes.push("to-user");
    if (fresh) classes.push("fresh");
    const who = el("span", { class: "msg-who" }, m.sender, m.to ? [el("span", { class: "arrow" }, "→"), m.to] : null);
    const head = el(
      "div",
      { class: "msg-head" },
      el("span", { class: `badge ${type}` }, type),
      who,
      m.task_id != null && !compact
        ? el("button", { class: "chip", type: "button", title: "Show only this task", onclick: () => setFilter("task_id", String(m.task_id)) }, `task #${m.task_id}`)
        : m.task_id != null ? el("span", { class: "chip" }, `task #${m.task_id}`) : null,
      m.workflow_id != null ? el("span", { class: "chip" }, `workflow #${m.workflow_id}`) : null,
      el("span", { class: "msg-id" }, `#${m.id}`),
      el("time", { class: "msg-time", datetime: m.created_at, title: m.created_at }, fmtTime(m.created_at)),
    );
    const foot = compact
      ? null
      : el(
          "div",
          { class: "msg-foot" },
          m.reply_to != null ? el("button", { class: "link", type: "button", onclick: () => openThread(m.id) }, `↪ reply to #${m.reply_to}`) : null,
          el("button", { class: "link thread-btn", type: "button", onclick: () => openThread(m.id) }, "Thread / reply"),
        );
    return el("li", { class: classes.join(" "), dataset: { id: String(m.id) } }, head, el("div", { class: "msg-body" }, m.content), foot);
  }

  function updateEmpty() {
    $("messages-empty").hidden = state.shown.size > 0;
    $("messages-empty").textContent = hasFilters() ? "No message matches these filters." : "No messages yet.";
  }

  function hasFilters() {
    return Object.values(state.filters).some((v) => v !== "");
  }

  function addMessage(m, where) {
    if (state.shown.has(m.id)) return;
    const li = messageItem(m, { fresh: where === "live" });
    const list = $("messages");
    if (where === "older") {
      list.append(li);
    } else {
      // keep newest first even if events arrive out of order
      let before = null;
      for (const child of list.children) {
        if (Number(child.dataset.id) < m.id) { before = child; break; }
      }
      list.insertBefore(li, before);
    }
    state.shown.set(m.id, li);
    state.cursor = Math.max(state.cursor, m.id);
    state.oldest = state.oldest === null ? m.id : Math.min(state.oldest, m.id);
  }

  // Only the newest load may draw: a slower answer to an older filter must not replace it.
  let loadGen = 0;
  async function loadMessages() {
    const gen = loadGen;
    const rows = await api(`/api/messages${query({ limit: PAGE })}`);
    if (gen !== loadGen) return false;
    $("messages").replaceChildren();
    state.shown.clear();
    state.oldest = null;
    state.cursor = 0;
    for (const m of rows) addMessage(m, "older");
    $("load-older").hidden = rows.length < PAGE;
    updateEmpty();
    return true;
  }

  async function loadOlder() {
    if (state.oldest === null) return;
    const rows = await api(`/api/messages${query({ limit: PAGE, before: state.oldest })}`);
    for (const m of rows) addMessage(m, "older");
    $("load-older").hidden = rows.length < PAGE;
  }

  // ---- the live stream (SSE over fetch) ----------------------------------------------
  function sseParser(onEvent) {
    let buf = "";
    let ev = { data: [], id: null, event: "message" };
    return (chunk) => {
      buf += chunk;
      for (;;) {
        const m = /\r\n|\n|\r/.exec(buf);
        if (!m) break;
        if (m[0] === "\r" && m.index === buf.length - 1) break; // a \r\n may be split across chunks
        const line = buf.slice(0, m.index);
        buf = buf.slice(m.index + m[0].length);
        if (line === "") {
          if (ev.data.length) onEvent(ev);
          ev = { data: [], id: null, event: "message" };
          continue;
        }
        if (line.startsWith(":")) continue; // keep-alive comment
        const i = line.indexOf(":");
        const field = i < 0 ? line : line.slice(0, i);
        let value = i < 0 ? "" : line.slice(i + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "data") ev.data.push(value);
        else if (field === "id") ev.id = value;
        else if (field === "event") ev.event = value;
      }
    };
  }

  function onStreamEvent(ev) {
    if (ev.event !== "message") return;
    let m;
    try { m = JSON.parse(ev.data.join("\n")); } catch { return; }
    addMessage(m, "live");
    updateEmpty();
    if (m.message_type === "question" || m.to === "user" || m.sender === "factory") schedulePending();
  }

  function stopStream() {
    state.streamGen += 1;
    if (state.streamAbort) state.streamAbort.abort();
    state.streamAbort = null;
  }

  async function runStream() {
    stopStream();
    const gen = state.streamGen;
    let delay = 1000;
    while (gen === state.streamGen && !state.needToken) {
      const ctrl = new AbortController();
      state.streamAbort = ctrl;
      try {
        const headers = { Accept: "text/event-stream", ...authHeaders(), "Last-Event-ID": String(state.cursor) };
        const res = await fetch(`/api/messages/stream/sse${query({ last_id: state.cursor })}`, { headers, signal: ctrl.signal, cache: "no-store" });
        if (res.status === 401) {
          askToken(localStorage.getItem(TOKEN_KEY) ? "The saved token was refused. Enter the current one." : null);
          return;
        }
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        setConn("live", "live");
        delay = 1000;
        const parse = sseParser(onStreamEvent);
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          parse(value);
        }
      } catch (err) {
        if (gen !== state.streamGen) return; // replaced by a newer stream (filters changed)
      }
      if (gen !== state.streamGen) return;
      setConn("wait", "reconnecting…");
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10000);
    }
  }

  // ---- filters ------------------------------------------------------------------------
  const FILTER_INPUTS = { task_id: "filter-task", message_type: "filter-type", agent: "filter-agent", search: "filter-search" };

  function readFiltersFromUrl() {
    const p = new URLSearchParams(location.search);
    for (const [k, id] of Object.entries(FILTER_INPUTS)) {
      state.filters[k] = p.get(k) || "";
      $(id).value = state.filters[k];
    }
  }

  function writeFiltersToUrl() {
    history.replaceState(null, "", `${location.pathname}${query()}`);
  }

  function setFilter(key, value) {
    $(FILTER_INPUTS[key]).value = value;
    applyFilters();
  }

  let filterTimer = null;
  function applyFilters() {
    clearTimeout(filterTimer);
    const next = {};
    for (const [k, id] of Object.entries(FILTER_INPUTS)) next[k] = $(id).value.trim();
    if (JSON.stringify(next) === JSON.stringify(state.filters)) return;
    state.filters = next;
    writeFiltersToUrl();
    refreshBoard();
  }

  function applyFiltersSoon() {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(applyFilters, 250);
  }

  async function refreshBoard() {
    stopStream();
    const gen = ++loadGen;
    try {
      if (!(await loadMessages())) return; // a newer refresh owns the board and its stream
      note("");
    } catch (err) {
      if (err instanceof AuthError || gen !== loadGen) return;
      note(`Could not load messages: ${err.message}`);
    }
    runStream();
  }

  // ---- threads ------------------------------------------------------------------------
  let threadOf = null;

  async function openThread(id) {
    threadOf = id;
    $("reply-error").textContent = "";
    $("thread-panel").hidden = false;
    try {
      const rows = await api(`/api/messages/${id}/thread`);
      $("thread-messages").replaceChildren(...rows.map((m) => messageItem(m, { compact: true })));
      $("thread-title").textContent = `Thread of #${rows.length ? rows[0].id : id} (${rows.length})`;
    } catch (err) {
      if (!(err instanceof AuthError)) $("thread-messages").replaceChildren(el("li", { class: "empty" }, err.message));
    }
  }

  async function sendReply(ev) {
    ev.preventDefault();
    const content = $("reply-content").value;
    if (!content.trim() || threadOf === null) return;
    try {
      await api("/api/messages", { method: "POST", body: { sender: localStorage.getItem(NAME_KEY) || "user", content, reply_to: threadOf } });
      $("reply-content").value = "";
      await openThread(threadOf);
    } catch (err) {
      if (!(err instanceof AuthError)) $("reply-error").textContent = err.message;
    }
  }

  async function sendCompose(ev) {
    ev.preventDefault();
    const content = $("compose-content").value;
    if (!content.trim()) return;
    const body = { sender: localStorage.getItem(NAME_KEY) || "user", content, message_type: $("compose-type").value };
    if ($("compose-to").value.trim()) body.to = $("compose-to").value.trim();
    if ($("compose-task").value.trim()) body.task_id = Number($("compose-task").value);
    try {
      await api("/api/messages", { method: "POST", body });
      $("compose-content").value = "";
      $("compose-error").textContent = "";
    } catch (err) {
      if (!(err instanceof AuthError)) $("compose-error").textContent = err.message;
    }
  }

  // ---- questions waiting for an answer ---------------------------------------------------
  const cards = new Map(); // question id -> card

  function pendingCard(task) {
    const q = task.pending_question;
    const input = el("textarea", { class: "answer-input", rows: 2, placeholder: "Your answer", "aria-label": `Answer to task ${task.id}` });
    const error = el("div", { class: "error-text" });
    const send = el("button", { class: "answer-send", type: "button" }, "Answer");
    const submit = async (text) => {
      if (!text.trim()) { input.focus(); return; }
      for (const b of card.querySelectorAll("button")) b.disabled = true;
      error.textContent = "";
      try {
        await api(`/api/tasks/${task.id}/answer`, {
          method: "POST",
          body: { answer: text, question_id: q.id, answered_by: localStorage.getItem(NAME_KEY) || "web" },
        });
        card.replaceChildren(el("p", { class: "pending-title" }, task.title), el("p", { class: "pending-meta" }, "Answer sent; the agent goes on."));
        setTimeout(loadPending, 800);
      } catch (err) {
        for (const b of card.querySelectorAll("button")) b.disabled = false;
        if (!(err instanceof AuthError)) error.textContent = err.message;
        if (err.status === 409) setTimeout(loadPending, 800);
      }
    };
    send.addEventListener("click", () => submit(input.value));
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) submit(input.value);
    });
    const options = (q.options || []).map((o) => el("button", { class: "option-btn", type: "button", onclick: () => submit(o) }, o));
    const card = el(
      "div",
      { class: "pending-card", dataset: { taskId: String(task.id), questionId: String(q.id) } },
      el("p", { class: "pending-title" }, task.title),
      el(
        "div",
        { class: "pending-meta" },
        el("button", { class: "link", type: "button", onclick: () => setFilter("task_id", String(task.id)) }, `task #${task.id}`),
        ` · ${task.agent_type} · asked ${fmtTime(q.asked_at)}`,
      ),
      el("p", { class: "pending-question" }, q.text),
      options.length ? el("div", { class: "options" }, options) : null,
      el("div", { class: "answer-row" }, input, send),
      error,
    );
    return card;
  }

  let pendingTimer = null;
  function schedulePending() {
    clearTimeout(pendingTimer);
    pendingTimer = setTimeout(loadPending, 300);
  }

  async function loadPending() {
    let tasks;
    try {
      tasks = await api("/api/tasks?status=awaiting_input&limit=100");
    } catch {
      return;
    }
    const waiting = tasks.filter((t) => t.pending_question);
    const keep = new Set(waiting.map((t) => t.pending_question.id));
    for (const [qid, card] of cards) {
      if (!keep.has(qid)) { card.remove(); cards.delete(qid); }
    }
    const box = $("pending");
    waiting.sort((a, b) => a.pending_question.id - b.pending_question.id);
    for (const t of waiting) {
      if (!cards.has(t.pending_question.id)) {
        const card = pendingCard(t);
        cards.set(t.pending_question.id, card);
        box.append(card);
      }
    }
    $("pending-empty").hidden = waiting.length > 0;
    $("pending-count").textContent = String(waiting.length);
    $("pending-count").classList.toggle("hot", waiting.length > 0);
  }

  // ---- start --------------------------------------------------------------------------
  function reloadAll() {
    refreshBoard();
    loadPending();
  }

  function init() {
    readFiltersFromUrl();
    $("filters").addEventListener("submit", (e) => { e.preventDefault(); applyFilters(); });
    $("filter-type").addEventListener("change", applyFilters);
    for (const id of ["filter-task", "filter-agent", "filter-search"]) {
      $(id).addEventListener("input", applyFiltersSoon);
      $(id).addEventListener("change", applyFilters);
    }
    $("filter-clear").addEventListener("click", () => {
      for (const id of Object.values(FILTER_INPUTS)) $(id).value = "";
      applyFilters();
    });
    $("load-older").addEventListener("click", () => loadOlder().catch((err) => note(err.message)));
    $("compose-form").addEventListener("submit", sendCompose);
    $("thread-close").addEventListener("click", () => { $("thread-panel").hidden = true; threadOf = null; });
    $("reply-form").addEventListener("submit", sendReply);
    $("open-settings").addEventListener("click", () => askToken(null));
    $("token-form").addEventListener("submit", saveToken);
    $("token-cancel").addEventListener("click", () => { $("token-dialog").hidden = true; });
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape") { $("thread-panel").hidden = true; $("token-dialog").hidden = true; }
    });
    setInterval(() => { if (!state.needToken && !document.hidden) loadPending(); }, PENDING_EVERY_MS);
    reloadAll();
  }

  init();
})();
