// Tasks: the live board by status with filters, and the New task form.
"use strict";

(() => {
  const { el } = F;
  const COLUMNS = ["queued", "in_progress", "awaiting_input", "done", "failed", "cancelled"];
  const POLL_MS = 1500;
  const filters = { repo: "", agent: "", workflow: "", text: "" };

  function option(value, label, selected) {
    return el("option", { value, selected: value === selected }, label);
  }

  function emptyState() {
    const box = el("div", { class: "empty-state" });
    if (!F.info.repos.length) {
      box.append(
        el("h2", {}, "Add a repository to start"),
        el("p", {}, "Tasks run on a repository Factory knows. Add one to config.yml (then restart Factory), or type ",
          el("code", {}, "owner/name"), " in the New task form when ", el("code", {}, "default_org"), " or a GitHub token lets Factory reach it:"),
        el("pre", { class: "snippet" }, F.info.repo_example),
      );
    } else {
      box.append(el("h2", {}, "No tasks yet"), el("p", {}, "Start one: ", el("a", { href: "#/new" }, "New task"), "."));
    }
    return box;
  }

  function card(t, runNames) {
    const run = t.workflow_run_id ? runNames.get(t.workflow_run_id) : null;
    return el(
      "li",
      { class: "task-card", dataset: { taskId: t.id, status: t.status } },
      el("a", { class: "task-title", href: `#/tasks/${t.id}` }, t.title),
      el("div", { class: "meta" },
        el("span", { class: "muted" }, `#${t.id}`), el("span", {}, t.repo), el("span", { class: "chip" }, t.agent_type),
        t.workflow_run_id ? el("a", { class: "chip", href: `#/runs/${t.workflow_run_id}` }, `${run || "workflow"} #${t.workflow_run_id}`) : null),
      el("div", { class: "meta" },
        el("span", {}, F.fmtTime(t.created_at)),
        t.cost_usd ? el("span", {}, F.fmtCost(t.cost_usd)) : null,
        t.pr_url ? F.link(t.pr_url, `PR${t.pr_number ? ` #${t.pr_number}` : ""}`) : null),
      t.pending_question ? el("p", { class: "card-question" }, "Asks: ", t.pending_question.text) : null,
    );
  }

  function matches(t, runNames) {
    if (filters.repo && t.repo !== filters.repo) return false;
    if (filters.agent && t.agent_type !== filters.agent) return false;
    if (filters.workflow === "-" && t.workflow_run_id) return false;
    if (filters.workflow && filters.workflow !== "-" && runNames.get(t.workflow_run_id) !== filters.workflow) return false;
    if (filters.text) {
      const hay = `#${t.id} ${t.title} ${t.description} ${t.branch || ""}`.toLowerCase();
      if (!hay.includes(filters.text.toLowerCase())) return false;
    }
    return true;
  }

  F.route("tasks", async (view, parts) => {
    if (parts.length && parts[0]) return F.taskPage(view, Number(parts[0]));
    const repos = new Set(F.info.repos.map((r) => r.name));
    const form = el("form", { class: "filters", id: "task-filters", role: "search", onsubmit: (e) => e.preventDefault() });
    const repoSel = el("select", { id: "filter-repo", name: "repo" });
    const agentSel = el("select", { id: "filter-agent", name: "agent" },
      option("", "any", filters.agent), F.info.agent_types.map((a) => option(a, a, filters.agent)));
    const wfSel = el("select", { id: "filter-workflow", name: "workflow" },
      option("", "any", filters.workflow), option("-", "single tasks", filters.workflow),
      F.info.workflows.map((w) => option(w, w, filters.workflow)));
    const text = el("input", { id: "filter-text", name: "text", type: "search", placeholder: "title, #id, branch", value: filters.text });
    form.append(
      el("label", {}, "Repo ", repoSel), el("label", {}, "Agent ", agentSel), el("label", {}, "Workflow ", wfSel),
      el("label", { class: "grow" }, "Search ", text),
    );
    const board = el("div", { class: "board", id: "board" });
    const cols = {};
    for (const s of COLUMNS) {
      const list = el("ol", { class: "cards", "aria-label": F.STATUS_LABEL[s] });
      const count = el("span", { class: "count" }, "0");
      cols[s] = { list, count };
      board.append(el("section", { class: `column col-${s}`, dataset: { status: s } },
        el("h2", {}, F.badge(s), " ", count), list));
    }
    const empty = el("div", { id: "board-empty" });
    view.append(F.heading("Tasks", el("a", { class: "button", href: "#/new" }, "New task")), form, empty, board);

    let last = { tasks: [], runNames: new Map() };
    const draw = () => {
      const { tasks, runNames } = last;
      const seen = [...new Set([...repos, ...tasks.map((t) => t.repo)])].sort();
      if (repoSel.dataset.repos !== seen.join("\n")) {  // rebuilt only when it changes: an open list stays open
        const keep = repoSel.value || filters.repo;
        repoSel.replaceChildren(option("", "any", keep), seen.map((r) => option(r, r, keep)));
        repoSel.dataset.repos = seen.join("\n");
      }
      const shown = tasks.filter((t) => matches(t, runNames));
      for (const s of COLUMNS) {
        const mine = shown.filter((t) => t.status === s);
        cols[s].list.replaceChildren(...mine.map((t) => card(t, runNames)));
        cols[s].count.textContent = String(mine.length);
      }
      empty.replaceChildren(tasks.length ? "" : emptyState());
      board.hidden = !tasks.length;
    };
    const onFilter = () => {
      Object.assign(filters, { repo: repoSel.value, agent: agentSel.value, workflow: wfSel.value, text: text.value.trim() });
      draw();
    };
    form.addEventListener("input", onFilter);
    form.addEventListener("change", onFilter);
    F.every(POLL_MS, async () => {
      const [tasks, runs] = await Promise.all([F.api("/api/tasks?limit=500"), F.api("/api/workflows?limit=500")]);
      last = { tasks, runNames: new Map(runs.map((r) => [r.id, r.name])) };
      draw();
    });
  });

  // ---- New task ------------------------------------------------------------------------
  function field(label, input, name, hint) {
    return el("div", { class: "field" },
      el("label", { for: input.id }, label), input,
      hint ? el("small", { class: "hint" }, hint) : null,
      el("span", { class: "field-error", dataset: { for: name }, role: "alert", hidden: true }));
  }

  F.route("new", (view) => {
    const info = F.info;
    const repo = el("input", { id: "new-repo", name: "repo", list: "repo-names", required: true, autocomplete: "off",
      value: info.repos.length === 1 ? info.repos[0].name : "", placeholder: info.repos.length ? info.repos[0].name : "owner/name" });
    const kind = el("select", { id: "new-kind", name: "kind" },
      el("optgroup", { label: "One agent" }, info.agent_types.map((a) => el("option", { value: `agent:${a}`, selected: a === "coder" }, a))),
      el("optgroup", { label: "A workflow" }, info.workflows.map((w) => el("option", { value: `workflow:${w}` }, w))));
    const title = el("input", { id: "new-title", name: "title", required: true, maxlength: 500, autocomplete: "off" });
    const desc = el("textarea", { id: "new-description", name: "description", rows: 6 });
    const runNow = el("input", { id: "new-run", name: "run", type: "checkbox", checked: true });
    const submit = el("button", { type: "submit", id: "new-submit" }, "Create task");
    const form = el("form", { id: "new-task", class: "form", autocomplete: "off", novalidate: true },
      el("datalist", { id: "repo-names" }, info.repos.map((r) => el("option", { value: r.name }))),
      field("Repository", repo, "repo", info.repos.length ? "a configured repo, or owner/name (checked with git ls-remote)" : "none configured yet: owner/name, or add one to config.yml"),
      field("Agent or workflow", kind, "agent_type"),
      field("Title", title, "title"),
      field("Description", desc, "description"),
      el("div", { class: "field inline" }, runNow, el("label", { for: "new-run" }, "Run now")),
      el("span", { class: "field-error", dataset: { for: "_form" }, role: "alert", hidden: true }),
      el("div", { class: "row end" }, submit));
    kind.addEventListener("change", () => { runNow.disabled = kind.value.startsWith("workflow:"); });
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      F.showErrors(form, null);
      const [what, name] = kind.value.split(/:(.*)/s);
      const body = { title: title.value, description: desc.value, repo: repo.value.trim() };
      submit.disabled = true;
      try {
        if (what === "workflow") {
          const run = await F.api("/api/workflows", { method: "POST", body: { ...body, name } });
          F.go(`#/runs/${run.id}`);
        } else {
          const t = await F.api(`/api/tasks?auto_run=${runNow.checked}`, { method: "POST", body: { ...body, agent_type: name } });
          F.go(`#/tasks/${t.id}`);
        }
      } catch (err) {
        if (!(err instanceof F.AuthError)) {
          F.showErrors(form, err, { repo: /\brepo\b/i, agent_type: /agent_type|agent type|workflow/i, title: /\btitle\b/i });
        }
      } finally {
        submit.disabled = false;
      }
    });
    view.append(F.heading("New task"), form);
    (info.repos.length ? title : repo).focus();
  });
})();
