// On a task's page (#/tasks/N): "Evidence", from GET /api/tasks/N/evidence: Factory's own checks of the
// agent's last commit (verdict, tested commit, test counts with failing names and their first error,
// browser scenarios with screenshots, console errors and failed requests, cost, tokens, turns).
// Appended below what task.js renders, as text only (names and errors came from the agent's code);
// screenshots are fetched with the page's credentials and shown as data: URLs (the page's CSP).
"use strict";

(() => {
  let loading = null;  // { id }: the load under way, for that task

  const headers = () => {
    const h = { Accept: "application/json" };
    const token = localStorage.getItem("factory.token");
    if (token) h.Authorization = `Bearer ${token}`;
    return h;
  };
  const get = (url) => fetch(url, { headers: headers(), cache: "no-store", credentials: "same-origin" });
  const node = (tag, cls, text) => {
    const n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined) n.textContent = text;
    return n;
  };

  async function picture(shot) {
    if (!/^\/api\/artifacts\/[0-9a-f]{64}$/.test(shot.url)) return null;  // only Factory's own addresses
    const r = await get(shot.url);
    if (!r.ok) return null;
    const img = node("img", "evidence-shot");
    const blob = await r.blob();
    if (blob.type !== "image/png") return null;
    img.src = await new Promise((ok, fail) => {  // a data: URL: the page's CSP allows img-src 'self' data: only
      const reader = new FileReader();
      reader.onload = () => ok(reader.result);
      reader.onerror = fail;
      reader.readAsDataURL(blob);
    });
    img.alt = "Screenshot of the preview";
    img.style.maxWidth = "100%";
    return img;
  }

  // Builds the panel (awaiting the answer and the screenshots), then mounts it in one synchronous step,
  // only if the page is still this task's and no panel is there yet: a render, "Who did what" or a
  // hash change arriving meanwhile cannot mount a second one.
  async function show(view, id) {
    const box = await build(id);
    if (!box || document.getElementById("task-evidence")) return;
    if (location.hash !== `#/tasks/${id}` || view.hidden || !view.querySelector("#task-head")) return;
    view.append(box);
  }

  async function build(id) {
    const r = await get(`/api/tasks/${id}/evidence`);
    if (!r.ok) return null;
    const ev = await r.json();
    const box = node("section", "panel");
    box.id = "task-evidence";
    box.append(node("h2", "", "Evidence"));
    const verdict = node("p", `evidence-verdict verdict-${ev.verdict}`, `Verdict: ${ev.verdict}`);
    verdict.id = "evidence-verdict";
    box.append(verdict);
    if (ev.verdict === "none") {
      box.append(node("p", "empty", "Factory has not checked this task's work (no checks configured, or not yet)."));
      return box;
    }
    box.append(node("p", "muted", `Tested commit ${String(ev.commit || "").slice(0, 12)} · round ${ev.round || 1}`));
    const t = ev.tests;
    if (t) {
      box.append(node("p", "evidence-tests", `Tests: ${t.passed} passed, ${t.failed} failed, ${t.skipped} skipped`));
      const list = node("ul");
      for (const f of t.failures || []) list.append(node("li", "evidence-failure", f));
      if (list.childElementCount) box.append(list);
    }
    for (const s of ev.scenarios || []) {
      const sec = node("div", "evidence-scenario");
      sec.append(node("h3", "", `${s.ok ? "✓" : "✗"} ${s.name}${s.error ? ` — ${s.error}` : ""}`));
      for (const c of s.console_errors || []) sec.append(node("p", "error-text", `console: ${c}`));
      for (const q of s.failed_requests || []) sec.append(node("p", "error-text", `request: ${q}`));
      for (const shot of s.screenshots || []) {
        const img = await picture(shot).catch(() => null);
        if (img) sec.append(img);
      }
      box.append(sec);
    }
    const cost = ev.cost_usd == null ? "–" : `$${Number(ev.cost_usd).toFixed(4)}`;
    box.append(node("p", "evidence-cost", `Cost ${cost} · ${ev.tokens ?? "–"} tokens · ${ev.turns ?? "–"} turns`));
    return box;
  }

  // Called on every change of the view's children (the page's render, this panel, "Who did what") and
  // on hash changes. One load per task at a time: a new render of the same task while its load is under
  // way gets the panel from that load (mounted at its end, into whatever the view holds then).
  function check() {
    const m = location.hash.match(/^#\/tasks\/(\d+)$/);
    const view = document.getElementById("view");
    if (!m || !view || view.hidden || !view.querySelector("#task-head")) return;  // not (yet) this task's page
    if ((loading && loading.id === m[1]) || document.getElementById("task-evidence")) return;
    const mine = { id: m[1] };
    loading = mine;
    show(view, mine.id).catch(() => {}).finally(() => { if (loading === mine) loading = null; });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const view = document.getElementById("view");
    if (view) new MutationObserver(check).observe(view, { childList: true });
    window.addEventListener("hashchange", check);
  });
})();
