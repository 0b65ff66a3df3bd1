// The dashboard's core: the token gate, the API client, the hash router, and small DOM helpers.
// Everything agents write reaches the page through text nodes (el() and textContent), never as
// HTML: no page script assigns innerHTML.
"use strict";

(() => {
  const TOKEN_KEY = "factory.token";
  const NAME_KEY = "factory.name";
  const F = (window.F = { routes: {}, info: null });
  const $ = (id) => document.getElementById(id);
  F.$ = $;

  class ApiError extends Error {
    constructor(status, detail, errors) {
      super(detail || `HTTP ${status}`);
      this.status = status;
      this.errors = errors || [];
    }
  }
  class AuthError extends Error {}
  F.ApiError = ApiError;
  F.AuthError = AuthError;

  // ---- DOM -------------------------------------------------------------------------------
  F.el = function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k === "text") node.textContent = String(v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  };
  const el = F.el;
  // replaceChildren() would write a null as the text "null": children go through el()'s filter
  F.fill = (node, ...children) => node.replaceChildren(...el("div", {}, ...children).childNodes);

  // an <a> only for http(s) URLs: an agent-chosen `javascript:` URL never becomes a link
  F.link = (url, text, props = {}) => {
    const ok = typeof url === "string" && /^https?:\/\//i.test(url);
    return ok ? el("a", { href: url, target: "_blank", rel: "noopener noreferrer", ...props }, text || url) : el("span", {}, text || url || "");
  };

  F.fmtTime = (iso) => {
    if (!iso) return "";
    const d = new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(iso) ? iso : `${iso}Z`);
    if (Number.isNaN(d.getTime())) return iso;
    const sameDay = d.toDateString() === new Date().toDateString();
    return sameDay ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" }) : d.toLocaleString();
  };
  F.since = (iso) => (iso ? new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(iso) ? iso : `${iso}Z`) : null);
  F.fmtDuration = (secs) => {
    if (secs === null || secs === undefined || Number.isNaN(secs)) return "–";
    secs = Math.max(0, Math.round(secs));
    if (secs < 60) return `${secs}s`;
    if (secs < 3600) return `${Math.floor(secs / 60)}m ${secs % 60}s`;
    return `${Math.floor(secs / 3600)}h ${Math.floor((secs % 3600) / 60)}m`;
  };
  F.taskDuration = (t) => {
    const a = F.since(t.started_at);
    if (!a) return null;
    const b = F.since(t.finished_at) || new Date();
    return (b - a) / 1000;
  };
  F.fmtCost = (usd) => `$${Number(usd || 0).toFixed(usd && usd < 0.1 ? 4 : 2)}`;
  F.STATUS_LABEL = {
    queued: "queued", in_progress: "running", awaiting_input: "waiting for an answer", done: "done",
    failed: "failed", cancelled: "cancelled", pending: "pending", running: "running", completed: "completed",
  };
  F.badge = (status) => el("span", { class: `badge st-${status}` }, F.STATUS_LABEL[status] || status);

  F.temporalLink = (kind, id) => {
    const info = F.info;
    if (!info) return null;
    const wf = (kind === "run" ? info.run_workflow_id : info.task_workflow_id).replace("{id}", String(id));
    const url = `${info.temporal_ui}/namespaces/${encodeURIComponent(info.namespace)}/workflows/${encodeURIComponent(wf)}`;
    return F.link(url, `Temporal: ${wf}`, { class: "temporal-link" });
  };

  // ---- API -------------------------------------------------------------------------------
  // kept in localStorage, so a new tab opens signed in (as the docs say); Sign out removes it
  F.token = () => localStorage.getItem(TOKEN_KEY) || "";
  F.userName = () => localStorage.getItem(NAME_KEY) || "user";

  F.api = async function api(path, options = {}) {
    const headers = { Accept: "application/json" };
    if (F.token()) headers.Authorization = `Bearer ${F.token()}`;
    if (window.FactorySession && window.FactorySession.csrf) headers["X-CSRF-Token"] = window.FactorySession.csrf; // session.js
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(path, {
      method: options.method || "GET",
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      cache: "no-store",
    });
    if (res.status === 401) {
      showGate(F.token() ? "The token was refused. Enter the current one." : null);
      throw new AuthError("token needed");
    }
    let data = null;
    if (res.status !== 204) {
      try { data = await res.json(); } catch { data = null; }
    }
    if (!res.ok) {
      const detail = data && typeof data.detail === "string" ? data.detail : res.statusText;
      throw new ApiError(res.status, detail, data && Array.isArray(data.errors) ? data.errors : []);
    }
    return data;
  };

  // Puts each error of a 4xx next to the field it concerns (`body.<name>` or a name in the text).
  F.showErrors = (form, err, guesses = {}) => {
    form.querySelectorAll(".field-error").forEach((n) => { n.textContent = ""; n.hidden = true; });
    form.querySelectorAll("[aria-invalid]").forEach((n) => n.removeAttribute("aria-invalid"));
    if (!err) return;
    const put = (name, text) => {
      const slot = form.querySelector(`.field-error[data-for="${name}"]`) || form.querySelector('.field-error[data-for="_form"]');
      if (!slot) return;
      slot.textContent = slot.textContent ? `${slot.textContent}; ${text}` : text;
      slot.hidden = false;
      const input = form.querySelector(`[name="${slot.dataset.for}"]`);
      if (input) input.setAttribute("aria-invalid", "true");
    };
    if (err.errors && err.errors.length) {
      for (const e of err.errors) {
        const loc = (e.loc || []).filter((x) => x !== "body" && x !== "query");
        put(String(loc[0] || "_form"), String(e.msg || "").replace(/^Value error, /, ""));
      }
      return;
    }
    const text = err.message || String(err);
    const hit = Object.entries(guesses).find(([, re]) => re.test(text));
    put(hit ? hit[0] : "_form", text);
  };

  // ---- the token gate --------------------------------------------------------------------
  function showGate(reason) {
    stopView();
    if (F.closeStreams) F.closeStreams();
    $("topbar").hidden = true;
    $("view").hidden = true;
    $("view").replaceChildren();
    if (reason) $("token-reason").textContent = reason;
    $("token-input").value = "";
    $("name-input").value = localStorage.getItem(NAME_KEY) || "";
    $("token-gate").hidden = false;
    $("token-input").focus();
  }

  async function start() {
    try {
      F.info = await F.api("/api/settings/dashboard");
    } catch (err) {
      if (!(err instanceof AuthError)) {
        showGate(`Factory did not answer: ${err.message}`);
      }
      return;
    }
    $("token-gate").hidden = true;
    $("topbar").hidden = false;
    $("view").hidden = false;
    $("nav-messages").hidden = !F.info.message_board;
    render();
  }

  // ---- the router ------------------------------------------------------------------------
  let timers = [];
  let gen = 0;
  F.every = (ms, fn) => {
    const mine = gen;
    let stopped = false;
    const tick = async () => {
      if (stopped || mine !== gen) return;
      try { await fn(); } catch (err) { if (!(err instanceof AuthError)) console.warn(err); }
      if (!stopped && mine === gen) timers.push(setTimeout(tick, document.hidden ? ms * 4 : ms));
    };
    tick();
    return () => { stopped = true; };
  };
  F.current = () => gen;
  function stopView() {
    gen += 1;
    timers.forEach(clearTimeout);
    timers = [];
  }
  F.route = (name, render) => { F.routes[name] = render; };
  F.go = (hash) => { if (location.hash === hash) render(); else location.hash = hash; };

  function render() {
    if (!F.info) return;
    stopView();
    F.closeStreams();
    const parts = (location.hash.replace(/^#\/?/, "") || "tasks").split("/").map(decodeURIComponent);
    const name = parts[0];
    const view = $("view");
    view.replaceChildren();
    document.querySelectorAll("[data-nav]").forEach((a) => {
      if (a.dataset.nav === name) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    });
    const page = F.routes[name];
    F.title(name.charAt(0).toUpperCase() + name.slice(1));
    if (!page) {
      F.notFound(view, "No such page.");
      return;
    }
    const run = page(view, parts.slice(1));
    if (run && run.catch) run.catch((err) => { if (!(err instanceof AuthError)) F.fail(view, err); });
  }

  F.title = (text) => { document.title = text ? `${text} · Factory` : "Factory"; };
  F.notFound = (view, text) => {
    F.title("Not found");
    view.replaceChildren(el("div", { class: "not-found", id: "not-found" }, el("h1", {}, "Not found"),
      el("p", {}, text, " ", el("a", { href: "#/tasks" }, "Back to the tasks"))));
  };
  F.fail = (view, err) => view.append(el("p", { class: "error-text", role: "alert" }, err.message || String(err)));
  F.heading = (text, ...extra) => el("div", { class: "page-head" }, el("h1", {}, text), ...extra);

  document.addEventListener("DOMContentLoaded", () => {
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      localStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
      const name = $("name-input").value.trim();
      if (name) localStorage.setItem(NAME_KEY, name); else localStorage.removeItem(NAME_KEY);
      start();
    });
    $("sign-out").addEventListener("click", () => {
      localStorage.removeItem(TOKEN_KEY);
      F.info = null;
      showGate("Signed out. Enter the token to open the dashboard again.");
    });
    window.addEventListener("hashchange", render);
    // without a saved token, ask at once: nothing is fetched before the person gives one
    if (F.token()) start(); else fetch("/api/settings/dashboard", { cache: "no-store" }).then((r) => (r.status === 401 ? showGate(null) : start()), () => showGate(null));
  });
})();
