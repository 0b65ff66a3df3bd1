// Tasks: the live board by status (pushed by /api/events, filtered on the server), and the New task form.
"use strict";

(() => {
  const { el } = F;
  const COLUMNS = ["queued", "in_progress", "awaiting_input", "done", "failed", "cancelled"];
  const filters = { status: "", repo: "", agent: "", workflow: "", text: "" };

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

  // A card is made once per key and changed in place afterwards: the title link (which may hold
  // the keyboard focus) and an open steps panel are kept; only their text and the rest change.
  function makeCard(key) {
    const title = el("a", { class: "task-title" });
    const body = el("div", { class: "card-body" });
    const steps = el("details", { class: "card-steps", hidden: true }, el("summary", {}, "Steps"), el("ol", { class: "step-list" }));
    const li = el("li", { class: "task-card", dataset: { key } }, title, body, steps);
    li._parts = { title, body, steps };
    return li;
  }

  function actionButton(t) {
    if (!t.allowed.includes("run")) return null;  // offered only where the server would accept it
    const b = el("button", { type: "button", class: "small run-btn", dataset: { taskId: t.id } }, "Run");
    b.addEventListener("click", async () => {
      b.disabled = true;
      try { await F.api(`/api/tasks/${t.id}/run`, { method: "POST" }); } catch (e) { b.title = e.message; b.disabled = false; }
    });
    return b;
  }

  function fillCard(li, c) {
    const { title, body, steps } = li._parts;
    if (c.kind === "task") {
      const t = c.task;
      li.dataset.taskId = t.id;
      li.dataset.status = t.status;
      const cost = Math.max(t.cost_usd || 0, t.ledger_cost_usd || 0);
      if (title.textContent !== t.title) title.textContent = t.title;
      title.setAttribute("href", `#/tasks/${t.id}`);
      F.fill(body,
        el("div", { class: "meta" }, el("span", { class: "muted" }, `#${t.id}`), el("span", {}, t.repo), el("span", { class: "chip" }, t.agent_type)),
        el("div", { class: "meta" }, el("span", {}, F.fmtTime(t.created_at)), cost ? el("span", { class: "card-cost" }, F.fmtCost(cost)) : null,
          t.pr_url ? F.link(t.pr_url, `PR${t.pr_number ? ` #${t.pr_number}` : ""}`) : null, actionButton(t)),
        t.pending_question ? el("p", { class: "card-question" }, "Asks: ", t.pending_question.text) : null);
      steps.hidden = true;
      F.notifyQuestion(t);
      return;
    }
    const r = c.run;
    li.classList.add("run-card");
    li.dataset.runId = r.id;
    li.dataset.status = r.column;
    li.dataset.workflow = r.name;
    if (title.textContent !== r.title) title.textContent = r.title;
    title.setAttribute("href", `#/runs/${r.id}`);
    const waiting = c.steps.find((s) => s.pending_question);
    F.fill(body,
      el("div", { class: "meta" }, el("span", { class: "muted" }, `run #${r.id}`), el("span", {}, r.repo), el("span", { class: "chip" }, r.name),
        r.iteration ? el("span", {}, `iteration ${r.iteration}`) : null),
      el("div", { class: "meta" }, el("span", {}, F.fmtTime(r.created_at)), r.cost_usd ? el("span", {}, F.fmtCost(r.cost_usd)) : null,
        r.pr_url ? F.link(r.pr_url, `PR${r.pr_number ? ` #${r.pr_number}` : ""}`) : null),
      waiting ? el("p", { class: "card-question" }, "Asks: ", waiting.pending_question.text) : null);
    steps.hidden = false;
    steps.querySelector("summary").textContent = `${c.steps.length} step${c.steps.length === 1 ? "" : "s"}`;
    F.fill(steps.querySelector("ol"), c.steps.map((s) => el("li", { dataset: { taskId: s.id } },
      el("a", { href: `#/tasks/${s.id}` }, `#${s.id} ${s.agent_type}`), " ", F.badge(s.status))));
    if (waiting) F.notifyQuestion(waiting);
  }

  F.route("tasks", async (view, parts) => {
    if (parts.length && parts[0]) return F.taskPage(view, parts[0]);
    F.title("Tasks");
    const repos = new Set(F.info.repos.map((r) => r.name));
    const form = el("form", { class: "filters", id: "task-filters", role: "search", onsubmit: (e) => e.preventDefault() });
    const repoSel = el("select", { id: "filter-repo", name: "repo" },
      option("", "any", filters.repo), [...repos].sort().map((r) => option(r, r, filters.repo)));
    const statusSel = el("select", { id: "filter-status", name: "status" },
      option("", "any", filters.status), COLUMNS.map((s) => option(s, F.STATUS_LABEL[s], filters.status)));
    const agentSel = el("select", { id: "filter-agent", name: "agent" },
      option("", "any", filters.agent), F.info.agent_types.map((a) => option(a, a, filters.agent)));
    const wfSel = el("select", { id: "filter-workflow", name: "workflow" },
      option("", "any", filters.workflow), option("-", "single tasks", filters.workflow),
      F.info.workflows.map((w) => option(w, w, filters.workflow)));
    const text = el("input", { id: "filter-text", name: "text", type: "search", placeholder: "title, #id, branch  (/)", value: filters.text });
    form.append(
      el("label", {}, "Status ", statusSel), el("label", {}, "Repo ", repoSel), el("label", {}, "Agent ", agentSel),
      el("label", {}, "Workflow ", wfSel), el("label", { class: "grow" }, "Search ", text),
    );
    const board = el("div", { class: "board", id: "board", hidden: true });
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

    const nodes = new Map();  // key -> <li>, kept across updates
    let order = [];
    let everything = false;  // the unfiltered board has at least one card
    const shown = (li) => {
      const wf = filters.workflow;
      if (!wf) return true;
      if (wf === "-") return !li.dataset.runId;
      return li.dataset.workflow === wf;
    };
    const place = () => {
      const per = Object.fromEntries(COLUMNS.map((s) => [s, []]));
      for (const key of order) {
        const li = nodes.get(key);
        if (li && shown(li) && per[li.dataset.status]) per[li.dataset.status].push(li);
      }
      const focused = document.activeElement;
      for (const s of COLUMNS) {
        const list = cols[s].list;
        const want = per[s];
        const same = want.length === list.children.length && want.every((li, i) => list.children[i] === li);
        if (!same) list.replaceChildren(...want);
        cols[s].count.textContent = String(want.length);
      }
      for (const li of nodes.values()) if (!li.isConnected || !shown(li)) li.remove();
      if (focused && focused !== document.activeElement && focused.isConnected) focused.focus();  // a moved card keeps it
      const any = order.length > 0;
      if (any) everything = true;
      empty.replaceChildren(any ? "" : everything || filtersSet() ? el("p", { class: "empty" }, "No task matches these filters.") : emptyState());
      board.hidden = !any;
    };
    const filtersSet = () => Boolean(filters.repo || filters.agent || filters.text || filters.status);
    let stream = null;
    const subscribe = () => {
      if (stream) stream.close();
      const q = new URLSearchParams();
      for (const k of ["status", "repo", "agent", "text"]) if (filters[k]) q.set(k, filters[k]);
      stream = F.stream(`/api/events?${q}`, {
        card: (c) => {
          let li = nodes.get(c.key);
          if (!li) { li = makeCard(c.key); nodes.set(c.key, li); }
          fillCard(li, c);
          place();
        },
        order: (keys) => {
          order = keys;
          for (const k of [...nodes.keys()]) if (!keys.includes(k)) { nodes.get(k).remove(); nodes.delete(k); }
          place();
        },
      });
    };
    let timer = 0;
    const onFilter = (ev) => {
      const before = `${filters.status}|${filters.repo}|${filters.agent}|${filters.text}`;
      Object.assign(filters, { status: statusSel.value, repo: repoSel.value, agent: agentSel.value, workflow: wfSel.value, text: text.value.trim() });
      if (`${filters.status}|${filters.repo}|${filters.agent}|${filters.text}` === before) { place(); return; }
      clearTimeout(timer);
      timer = setTimeout(subscribe, ev && ev.target === text ? 250 : 0);  // typing: one request per pause
    };
    form.addEventListener("input", onFilter);
    form.addEventListener("change", onFilter);
    subscribe();
  });

  // ---- New task ------------------------------------------------------------------------
  function field(label, input, name, hint) {
    return el("div", { class: "field" },
      el("label", { for: input.id }, label), input,
      hint ? el("small", { class: "hint" }, hint) : null,
      el("span", { class: "field-error", dataset: { for: name }, role: "alert", hidden: true }));
  }

  F.route("new", (view) => {
    F.title("New task");
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
