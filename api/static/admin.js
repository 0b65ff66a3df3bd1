// Agents, Environments, Memory and Settings.
"use strict";

(() => {
  const { el } = F;

  function table(headers, rows, empty) {
    if (!rows.length) return el("p", { class: "empty" }, empty);
    return el("div", { class: "table-wrap" }, el("table", { class: "grid" },
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows)));
  }

  function confirmButton(label, fn, cls = "danger small") {
    const b = el("button", { type: "button", class: cls }, label);
    b.addEventListener("click", async () => {
      if (!window.confirm(`${label}?`)) return;
      b.disabled = true;
      try { await fn(); } catch (e) { b.disabled = false; b.after(el("span", { class: "error-text" }, ` ${e.message}`)); }
    });
    return b;
  }

  F.route("agents", (view) => {
    const slot = el("div", { id: "agents" });
    view.append(F.heading("Agents running now"), slot);
    const load = async () => {
      const runs = await F.api("/api/agents");
      slot.replaceChildren(table(["Task", "Type", "Host", "Started", "Last output", ""], runs.map((a) => el("tr", {},
        el("td", {}, el("a", { href: `#/tasks/${a.task_id}` }, `#${a.task_id}`), " ", a.title || ""),
        el("td", {}, a.agent_type), el("td", {}, a.host, a.pid ? ` (pid ${a.pid})` : ""),
        el("td", {}, F.fmtTime(a.started_at)),
        el("td", { class: "clip" }, a.last_output || "", a.last_output_at ? el("span", { class: "muted" }, ` ${F.fmtTime(a.last_output_at)}`) : ""),
        el("td", {}, confirmButton("Stop", async () => { await F.api(`/api/tasks/${a.task_id}/cancel`, { method: "POST" }); await load(); })))),
        "No agent is running."));
    };
    F.every(3000, load);
  });

  F.route("environments", (view) => {
    const slot = el("div", { id: "environments" });
    view.append(F.heading("Test and preview environments"), slot);
    const load = async () => {
      let envs;
      try { envs = await F.api("/api/environments"); } catch (e) {
        if (e instanceof F.AuthError) throw e;
        slot.replaceChildren(el("p", { class: "empty" }, `Environments are not available here: ${e.message}`));
        return;
      }
      const now = Date.now() / 1000;
      slot.replaceChildren(table(["Task", "Kind", "URL", "Age", "Status", ""], envs.map((e) => el("tr", {},
        el("td", {}, el("a", { href: `#/tasks/${e.task_id}` }, `#${e.task_id}`)), el("td", {}, e.kind),
        el("td", {}, e.url ? F.link(e.url) : "–"), el("td", {}, e.created ? F.fmtDuration(now - e.created) : "–"),
        el("td", {}, e.status),
        el("td", {}, confirmButton("Tear down", async () => { await F.api(`/api/environments/${encodeURIComponent(e.name)}`, { method: "DELETE" }); await load(); })))),
        "No environment is running."));
    };
    F.every(5000, load);
  });

  F.route("memory", (view) => {
    if (!F.info.memory) {
      view.append(F.heading("Memory"), el("p", { class: "empty" }, "Agent memory is off (memory.enabled: false)."));
      return;
    }
    const q = el("input", { id: "memory-q", type: "search", name: "q", placeholder: "search what agents learned", "aria-label": "Search memory" });
    const repoIn = el("input", { id: "memory-repo", name: "repo", placeholder: "repo (optional)", list: "memory-repos", "aria-label": "Repo" });
    const results = el("ol", { class: "memories", id: "memory-results" });
    const search = async () => {
      const p = new URLSearchParams();
      if (q.value.trim()) p.set("q", q.value.trim());
      if (repoIn.value.trim()) p.set("repo", repoIn.value.trim());
      try {
        const hits = await F.api(`/api/memory?${p}`);
        results.replaceChildren(...(hits.length ? hits.map((m) => el("li", { class: "panel memory" },
          el("div", { class: "page-head" }, el("h3", {}, m.title), confirmButton("Forget", async () => { await F.api(`/api/memory/${encodeURIComponent(m.id)}`, { method: "DELETE" }); await search(); })),
          el("p", { class: "meta" }, el("span", { class: "chip" }, m.kind), el("span", {}, m.repo), m.task_id ? el("a", { href: `#/tasks/${m.task_id}` }, `task #${m.task_id}`) : null,
            m.outcome ? el("span", {}, m.outcome) : null, el("span", { class: "muted" }, m.created_at)),
          el("p", { class: "pre-wrap" }, m.summary),
          m.learnings.length ? el("ul", {}, m.learnings.map((l) => el("li", {}, l))) : null)) : [el("li", { class: "empty" }, "Nothing found.")]));
      } catch (e) {
        if (e instanceof F.AuthError) throw e;
        results.replaceChildren(el("li", { class: "error-text" }, e.message));
      }
    };
    const searchForm = el("form", { class: "filters", role: "search", onsubmit: (ev) => { ev.preventDefault(); search(); } },
      el("label", { class: "grow" }, "Search ", q), el("label", {}, "Repo ", repoIn), el("button", { type: "submit" }, "Search"),
      el("datalist", { id: "memory-repos" }, F.info.repos.map((r) => el("option", { value: r.name }))));
    const nRepo = el("input", { id: "note-repo", name: "repo", required: true, value: F.info.repos.length ? F.info.repos[0].name : "" });
    const nTitle = el("input", { id: "note-title", name: "title" });
    const nContent = el("textarea", { id: "note-content", name: "content", rows: 3, required: true });
    const addForm = el("form", { class: "form", id: "note-form", novalidate: true },
      el("div", { class: "field" }, el("label", { for: "note-repo" }, "Repo"), nRepo, el("span", { class: "field-error", dataset: { for: "repo" }, hidden: true })),
      el("div", { class: "field" }, el("label", { for: "note-title" }, "Title"), nTitle, el("span", { class: "field-error", dataset: { for: "title" }, hidden: true })),
      el("div", { class: "field" }, el("label", { for: "note-content" }, "Note"), nContent, el("span", { class: "field-error", dataset: { for: "content" }, hidden: true })),
      el("span", { class: "field-error", dataset: { for: "_form" }, hidden: true }),
      el("div", { class: "row end" }, el("button", { type: "submit" }, "Add note")));
    addForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      F.showErrors(addForm, null);
      try {
        await F.api("/api/memory", { method: "POST", body: { repo: nRepo.value.trim(), title: nTitle.value || null, content: nContent.value } });
        nTitle.value = ""; nContent.value = "";
        await search();
      } catch (e) { if (!(e instanceof F.AuthError)) F.showErrors(addForm, e, { repo: /\brepo\b/i, content: /content/i }); }
    });
    view.append(F.heading("Memory"), searchForm, el("details", { class: "panel" }, el("summary", {}, "Add a note"), addForm), results);
    search();
  });

  F.route("settings", async (view) => {
    const s = await F.api("/api/settings");
    const filter = el("input", { id: "settings-filter", type: "search", placeholder: "filter keys", "aria-label": "Filter settings" });
    const rows = s.settings.map((x) => el("tr", { dataset: { key: x.key } },
      el("td", {}, el("code", {}, x.key)),
      el("td", { class: x.secret ? "secret" : "" }, x.value === null ? el("span", { class: "muted" }, "not set") : typeof x.value === "string" ? x.value : JSON.stringify(x.value)),
      el("td", {}, el("span", { class: `chip src-${x.source.replace(/\W+/g, "-")}` }, x.source))));
    filter.addEventListener("input", () => {
      const f = filter.value.toLowerCase();
      rows.forEach((r) => { r.hidden = f && !r.dataset.key.toLowerCase().includes(f); });
    });
    view.append(F.heading("Settings"),
      el("p", { class: "muted" }, "The configuration in force", s.config_file ? [" (", el("code", {}, s.config_file), ")"] : "",
        ". Secrets are never shown: only whether they are set and where from."),
      filter, table(["Key", "Value", "Source"], rows, "No settings."));
  });
})();
