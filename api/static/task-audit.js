// On a task's page (#/tasks/N): "Who did what", from GET /api/tasks/N/audit (who created, answered,
// cancelled, retried it or raised its budget), appended below what task.js renders, as text only.
"use strict";

(() => {
  let shown = null;

  async function show(view, id) {
    const headers = { Accept: "application/json" };
    const token = localStorage.getItem("factory.token");
    if (token) headers.Authorization = `Bearer ${token}`;
    const r = await fetch(`/api/tasks/${id}/audit`, { headers, cache: "no-store", credentials: "same-origin" });
    if (!r.ok) return;
    const entries = await r.json();
    // two page renders can both be waiting here: the first to arrive shows the list, once
    if (document.getElementById("task-audit") || location.hash !== `#/tasks/${id}`) return;
    const box = document.createElement("section");
    box.id = "task-audit";
    box.className = "card";
    const h = document.createElement("h2");
    h.textContent = "Who did what";
    const list = document.createElement("ul");
    for (const e of entries) {
      const li = document.createElement("li");
      li.className = "task-audit-entry";
      li.textContent = `${new Date(e.at).toLocaleString()} · ${e.actor} · ${e.action} · ${e.outcome}`;
      list.append(li);
    }
    if (!entries.length) list.append(Object.assign(document.createElement("li"), { textContent: "Nothing recorded yet." }));
    box.append(h, list);
    view.append(box);
  }

  function check() {
    const m = location.hash.match(/^#\/tasks\/(\d+)$/);
    const view = document.getElementById("view");
    if (!m || !view || view.hidden || !view.childElementCount) { shown = null; return; }
    if (shown === m[1] && document.getElementById("task-audit")) return;
    shown = m[1];
    show(view, m[1]).catch(() => {});
  }

  document.addEventListener("DOMContentLoaded", () => {
    const view = document.getElementById("view");
    if (view) new MutationObserver(check).observe(view, { childList: true });
    window.addEventListener("hashchange", check);
  });
})();
