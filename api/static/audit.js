// The audit log page: GET /api/audit with the filters, newest first, a page at a time. Every value
// is put into the page as text.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  let cursor = null;

  function headers() {
    const h = { Accept: "application/json" };
    const token = localStorage.getItem("factory.token");
    if (token) h.Authorization = `Bearer ${token}`;
    return h;
  }

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    if (cls) td.className = cls;
    return td;
  }

  async function load(more) {
    const q = new URLSearchParams();
    for (const [id, name] of [["f-actor", "actor"], ["f-action", "action"], ["f-task", "task_id"]]) {
      const v = $(id).value.trim();
      if (v) q.set(name, v);
    }
    if (more && cursor) q.set("cursor", cursor);
    const r = await fetch(`/api/audit?${q}`, { headers: headers(), cache: "no-store", credentials: "same-origin" });
    if (r.status === 401) { location.replace("/static/signin.html"); return; }
    const data = await r.json();
    if (!r.ok) {
      $("audit-error").textContent = typeof data.detail === "string" ? data.detail : `HTTP ${r.status}`;
      $("audit-error").hidden = false;
      return;
    }
    $("audit-error").hidden = true;
    if (!more) $("audit-rows").replaceChildren();
    for (const e of data.entries) {
      const tr = document.createElement("tr");
      tr.className = "audit-entry";
      tr.append(cell(new Date(e.at).toLocaleString()), cell(e.actor, "audit-actor"), cell(e.action, "audit-action"),
        cell(e.target, "audit-target"), cell(e.outcome, `audit-outcome outcome-${e.outcome}`), cell(e.source));
      $("audit-rows").append(tr);
    }
    cursor = data.next_cursor;
    $("audit-more").hidden = !cursor;
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("audit-filter").addEventListener("submit", (ev) => { ev.preventDefault(); load(false); });
    $("audit-more").addEventListener("click", () => load(true));
    load(false);
  });
})();
