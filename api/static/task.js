// A task's page, pushed by /api/events?task_id= (log and message cursors, so a reload or a dropped
// connection loses nothing; the stream ends once the task is finished, and the page stops asking):
// status and stage, the agent's work rendered by kind, the thread (people's follow-ups, handoff
// instructions, each round's reply), the reviewable diff, the pending question, past answers,
// handoffs, recalled memories, and the actions the server allows.
"use strict";

(() => {
  const { el } = F;
  const FINISHED = new Set(["done", "failed", "cancelled"]);

  // ---- question ------------------------------------------------------------------------------
  function questionBox(t, onAnswered) {
    const q = t.pending_question;
    const err = el("p", { class: "error-text", role: "alert", hidden: true });
    const send = async (answer, btns) => {
      btns.forEach((b) => { b.disabled = true; });
      err.hidden = true;
      try {
        await F.api(`/api/tasks/${t.id}/answer`, { method: "POST", body: { answer, question_id: q.id, answered_by: F.userName() } });
        onAnswered();
      } catch (e) {
        err.textContent = e.message;
        err.hidden = false;
        btns.forEach((b) => { b.disabled = false; });
      }
    };
    const text = el("textarea", { id: "answer-text", rows: 2, placeholder: "Your answer", "aria-label": "Your answer" });
    const buttons = [];
    const opts = (q.options || []).map((o) => {
      const b = el("button", { type: "button", class: "option-btn" }, o);
      b.addEventListener("click", () => send(o, buttons));
      return b;
    });
    const submit = el("button", { type: "submit" }, "Answer");
    buttons.push(...opts, submit);
    const form = el("form", { class: "answer-form", onsubmit: (ev) => { ev.preventDefault(); if (text.value.trim()) send(text.value, buttons); } },
      text, el("div", { class: "row end" }, submit));
    return el("section", { class: "panel question-panel", id: "question", "aria-label": "The agent's question" },
      el("h2", {}, "The agent asks"), el("p", { class: "question-text" }, q.text),
      opts.length ? el("div", { class: "options" }, opts) : null, form, err);
  }

  // ---- actions -------------------------------------------------------------------------------
  function actions(t, refresh) {
    const out = el("div", { class: "actions" });
    const err = el("p", { class: "error-text", role: "alert", hidden: true });
    const act = (label, path, body, cls = "", after = null) => {
      const b = el("button", { type: "button", class: cls, id: `action-${label.toLowerCase().replace(/\s+/g, "-")}` }, label);
      b.addEventListener("click", async () => {
        b.disabled = true;
        err.hidden = true;
        try {
          const sent = body ? body() : undefined;
          const res = await F.api(path, { method: "POST", body: sent });
          if (after) await after(sent, res).catch(() => {});
          if (res && res.task && res.task.id !== t.id) F.go(`#/tasks/${res.task.id}`); else refresh();
        } catch (e) {
          err.textContent = e.message;
          err.hidden = false;
        } finally { b.disabled = false; }
      });
      return b;
    };
    const may = new Set(t.allowed || []);  // the server's own rules: nothing offered that would be a 409
    if (may.has("run")) out.append(act("Run", `/api/tasks/${t.id}/run`));
    if (may.has("cancel")) out.append(act("Cancel", `/api/tasks/${t.id}/cancel`, null, "danger"));
    if (may.has("retry")) out.append(act("Retry", `/api/tasks/${t.id}/retry`));
    if (may.has("handoff")) {
      const to = el("select", { id: "handoff-agent", "aria-label": "Hand off to" }, F.info.agent_types.map((a) => el("option", { value: a }, a)));
      const ctx = el("input", { id: "handoff-context", type: "text", placeholder: "what the next agent should do", "aria-label": "Handoff context" });
      out.append(el("span", { class: "handoff" }, to, ctx,
        act("Hand off", "/api/handoffs", () => ({ from_task_id: t.id, to_agent: to.value, context: ctx.value }), "ghost",
          // the instruction is kept on the board, so the thread shows it afterwards
          // (under the new task: both its page and this one, whose round it is, show it; addressed to no
          // agent, so no inbox delivers it a second time after the prompt)
          (b, res) => (F.info.message_board && b.context.trim() ? F.api("/api/messages", { method: "POST", body: {
            sender: F.userName(), content: `Handed off to ${b.to_agent}: ${b.context}`, task_id: (res && res.task && res.task.id) || t.id } }) : Promise.resolve()))));
    }
    return [out, err];
  }

  // ---- the page ------------------------------------------------------------------------------
  const costOf = (t) => Math.max(t.cost_usd || 0, t.ledger_cost_usd || 0);  // a killed run's cost is in the ledger
  const turnsOf = (t) => (t.num_turns ? String(t.num_turns) : t.tool_calls ? `${t.tool_calls} tool calls (the run was stopped)` : "0");

  F.taskPage = async (view, raw) => {
    const id = Number(raw);
    if (!/^\d+$/.test(String(raw)) || !Number.isSafeInteger(id) || id < 1) return F.notFound(view, `“${raw}” is not a task id.`);
    F.title(`Task #${id}`);
    const head = el("div", { id: "task-head" });
    const question = el("div", { id: "question-slot" });
    const logList = el("ol", { class: "logs", id: "logs" });
    const logBox = el("div", { class: "log-box", tabindex: "0", "aria-label": "The agent's output" }, logList);
    const logEmpty = el("p", { class: "empty", id: "logs-empty" }, "No output yet.");
    const thread = el("ol", { class: "thread", id: "thread", "aria-live": "polite" });
    const say = el("textarea", { id: "follow-up-text", rows: 2, placeholder: "Tell the agent…", "aria-label": "Message to the agent" });
    const sayErr = el("p", { class: "error-text", role: "alert", hidden: true, id: "follow-up-error" });
    const sayBtn = el("button", { type: "submit", id: "follow-up-send" }, "Send");
    const sayForm = el("form", { class: "answer-form", id: "follow-up" }, say, el("div", { class: "row end" }, sayBtn), sayErr);
    const diffSlot = el("div", { id: "diff" }, el("p", { class: "empty" }, "The diff appears once the agent has changed a file."));
    const diffBtn = el("button", { type: "button", class: "ghost small", id: "diff-refresh" }, "Refresh diff");
    const qa = el("div", { id: "past-qa" });
    const handoffs = el("div", { id: "handoffs" });
    const memories = el("div", { id: "memories" }, el("p", { class: "empty" }, "None."));
    const live = el("p", { class: "muted live-note", id: "live-note" });
    view.append(
      el("p", { class: "crumbs" }, el("a", { href: "#/tasks" }, "Tasks"), " / ", `#${id}`),
      head, question,
      el("div", { class: "task-grid" },
        el("div", {},
          el("section", { class: "panel output" }, el("h2", {}, "Output"), logEmpty, logBox, live),
          el("section", { class: "panel", "aria-labelledby": "thread-title" }, el("h2", { id: "thread-title" }, "Conversation"), thread, sayForm)),
        el("aside", { class: "side" },
          el("section", { class: "panel" }, el("h2", {}, "Questions and answers"), qa),
          el("section", { class: "panel" }, el("h2", {}, "Handoffs"), handoffs),
          el("section", { class: "panel" }, el("h2", {}, "Memories recalled"), memories))),
      el("section", { class: "panel" }, el("div", { class: "page-head" }, el("h2", {}, "Changes"), diffBtn), diffSlot));

    const gen = F.current();
    const tasks = new Map();
    const seenLogs = new Set();
    const seenMsgs = new Set();
    const rounds = new Map();  // task id -> its thread item
    const pendingTools = new Map();  // task id -> [{ el, name }] awaiting their results, in order
    let stream = null;
    let headKey = "";
    let lastQ = null;
    let diffMode = "unified";
    let diffTimer = 0;
    let editing = false;  // an edit's or command's result is still to come
    let found = false;

    const loadDiff = async () => {
      const t = tasks.get(id);
      if (!t || !t.branch || gen !== F.current()) return;
      try {
        const d = await F.api(`/api/tasks/${id}/diff`);
        if (gen !== F.current() || commentPending()) return;
        const keep = diffSlot.querySelector(".diff-table");
        diffSlot.replaceChildren(F.reviewDiff(d, { taskId: id, mode: keep && keep.classList.contains("split") ? "split" : diffMode, onSent: () => subscribe() }));
      } catch (e) {
        if (!(e instanceof F.AuthError) && !commentPending()) diffSlot.replaceChildren(el("p", { class: "empty" }, e.message));
      } finally {
        diffSlot.dataset.reads = String(Number(diffSlot.dataset.reads || 0) + 1);  // each read ended (kept or drawn)
      }
    };
    // a line comment being typed, written but not sent, or on its way stays: no reload of the diff (live, or a
    // click on Refresh) replaces it; the comment's own button is disabled while it is sent, which takes the focus
    const commentPending = () => diffSlot.contains(document.activeElement)
      || [...diffSlot.querySelectorAll(".comment-form")].some((f) => f.querySelector(".comment-text").value.trim() || f.querySelector("button[type=submit]").disabled);
    diffBtn.addEventListener("click", loadDiff);
    const soonDiff = () => { clearTimeout(diffTimer); diffTimer = setTimeout(loadDiff, 1500); };  // live on the agent's edits

    const drawHead = (t, stage) => {
      const [acts, err] = actions(t, () => subscribe());
      F.fill(head,
        F.heading(t.title),
        el("div", { class: "status-line" }, F.badge(t.status), stage && !FINISHED.has(t.status) ? el("span", { class: "stage", id: "stage" }, `stage: ${stage}`) : null),
        el("dl", { class: "facts" },
          el("dt", {}, "Repo"), el("dd", {}, t.repo),
          el("dt", {}, "Agent"), el("dd", {}, t.agent_type),
          el("dt", {}, "Branch"), el("dd", {}, t.branch ? el("code", {}, t.branch) : "–", t.base_branch ? ` from ${t.base_branch}` : ""),
          el("dt", {}, "Cost"), el("dd", { id: "task-cost" }, F.fmtCost(costOf(t))),
          el("dt", {}, "Turns"), el("dd", { id: "task-turns" }, turnsOf(t)),
          el("dt", {}, "Duration"), el("dd", {}, F.fmtDuration(F.taskDuration(t))),
          el("dt", {}, "Created"), el("dd", {}, F.fmtTime(t.created_at)),
          t.workflow_run_id ? [el("dt", {}, "Workflow"), el("dd", {}, el("a", { href: `#/runs/${t.workflow_run_id}` }, `run #${t.workflow_run_id}`), t.iteration ? ` iteration ${t.iteration}` : "")] : null,
          t.parent_task_id ? [el("dt", {}, "From"), el("dd", {}, el("a", { href: `#/tasks/${t.parent_task_id}` }, `task #${t.parent_task_id}`))] : null),
        el("p", { class: "links" },
          t.pr_url ? F.link(t.pr_url, `Pull request${t.pr_number ? ` #${t.pr_number}` : ""}`, { id: "pr-link" }) : null,
          t.preview_url ? F.link(t.preview_url, "Preview", { id: "preview-link" }) : null,
          t.workflow_run_id ? null : F.temporalLink("task", t.id)),
        t.error ? el("p", { class: "error-text", id: "task-error" }, t.error) : null,
        t.note ? el("p", { class: "note" }, t.note) : null,
        acts, err);
    };

    const loadSide = async () => {
      const hs = await F.api(`/api/tasks/${id}/handoffs`);
      if (gen !== F.current()) return;
      handoffs.replaceChildren(hs.length ? el("ol", { class: "qa" }, hs.map((h) => el("li", {},
        el("p", {}, `${h.from_agent} → ${h.to_agent || "–"} `,
          h.from_task_id && h.from_task_id !== id ? el("a", { href: `#/tasks/${h.from_task_id}` }, `from #${h.from_task_id}`) : null, " ",
          h.to_task_id && h.to_task_id !== id ? el("a", { href: `#/tasks/${h.to_task_id}` }, `to #${h.to_task_id}`) : null),
        h.context ? el("p", { class: "handoff-context" }, el("strong", {}, "Instruction: "), h.context) : null,
        h.summary ? F.markdown(h.summary) : null))) : el("p", { class: "empty" }, "None."));
    };

    const roundItem = (t) => {
      let li = rounds.get(t.id);
      if (!li) {
        li = el("li", { class: "thread-item round", dataset: { taskId: t.id } });
        rounds.set(t.id, li);
        thread.append(li);
      }
      F.fill(li, el("p", { class: "who" }, el("a", { href: `#/tasks/${t.id}` }, `Round: task #${t.id}`), " ", F.badge(t.status)),
        t.result && FINISHED.has(t.status) ? el("div", { class: "round-reply" }, F.agentText(t.result)) : null,
        t.error ? el("p", { class: "error-text" }, t.error) : null);
    };

    const onTask = async (t) => {
      found = true;
      const was = tasks.get(t.id);
      tasks.set(t.id, t);
      if (t.pending_question) F.notifyQuestion(t);
      if (t.id !== id) roundItem(t);
      const asking = [...tasks.values()].reverse().find((x) => x.pending_question);
      const qid = asking ? asking.pending_question.id : null;
      if (qid !== lastQ) {
        lastQ = qid;
        question.replaceChildren(asking ? questionBox(asking, () => subscribe()) : "");
      }
      if (t.id !== id) return;
      if (!was || was.status !== t.status) loadSide().catch(() => {});
      let stage = null;
      if (!FINISHED.has(t.status)) stage = (await F.api(`/api/tasks/${id}/stage`).catch(() => ({ stage: null }))).stage;
      if (gen !== F.current()) return;
      const key = JSON.stringify([t, stage]);
      // keep a focused control (a handoff being chosen) untouched unless the status moved
      if (key !== headKey && (!head.contains(document.activeElement) || !was || was.status !== t.status)) {
        headKey = key;
        drawHead(t, stage);
      }
      // a finished task's pushed diff, or a running one's live diff (refreshed below as the agent edits)
      if (t.branch && (!was || was.status !== t.status || !was.branch)) loadDiff();
    };

    const onLog = (r) => {
      if (seenLogs.has(r.id)) return;
      seenLogs.add(r.id);
      const atEnd = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 40;
      if (r.kind === "memory") { memories.replaceChildren(el("pre", { class: "log-text" }, r.content)); return; }
      if (r.task_id !== id && !logList.querySelector(`[data-round="${r.task_id}"]`)) {
        logList.append(el("li", { class: "log log-round", dataset: { round: r.task_id } }, el("strong", {}, `Round: task #${r.task_id}`)));
      }
      const item = F.logItem(r, pendingTools, logList);
      if (item) logList.append(item);
      // an edit or a command (a commit too) may change the worktree: the live diff follows, debounced
      if (r.kind === "tool_use" && /^(Edit|Write|MultiEdit|NotebookEdit|Bash)\b/.test(r.content)) { editing = true; soonDiff(); }
      else if (r.kind === "tool_result" && editing) { editing = false; soonDiff(); }
      logEmpty.hidden = logList.children.length > 0;
      if (atEnd) logBox.scrollTop = logBox.scrollHeight;
    };

    const onMessage = (m) => {
      if (seenMsgs.has(m.id)) return;
      seenMsgs.add(m.id);
      thread.append(el("li", { class: "thread-item message", dataset: { messageId: m.id } },
        el("p", { class: "who" }, el("strong", {}, m.sender), m.recipient ? ` → ${m.recipient}` : "", " ", el("time", { class: "muted" }, F.fmtTime(m.created_at))),
        F.agentText(m.content)));
    };

    const subscribe = () => {
      if (stream && !stream.closed) return;
      live.textContent = "";
      stream = F.stream(`/api/events?task_id=${id}`, {
        task: onTask,
        questions: (qs) => {
          qa.replaceChildren(qs.length ? el("ol", { class: "qa" }, qs.map((q) => el("li", {},
            el("p", { class: "q" }, q.text), q.options ? el("p", { class: "muted" }, `options: ${q.options.join(" · ")}`) : null,
            el("p", { class: "a" }, q.answer ? [q.answer, el("span", { class: "muted" }, ` — ${q.answered_by || ""}, ${F.fmtTime(q.answered_at)}`)] : `(${q.status})`)))) : el("p", { class: "empty" }, "None."));
        },
        log: onLog,
        message: onMessage,
        end: () => { live.textContent = "Finished: live updates stopped. A message below starts a new round."; },
        missing: () => { if (!found) F.notFound(view, `There is no task #${id}.`); },
      }, stream ? stream.last : "");
    };

    sayForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (!say.value.trim()) { sayErr.textContent = "Write a message first."; sayErr.hidden = false; return; }
      sayBtn.disabled = true;
      sayErr.hidden = true;
      try {
        await F.api(`/api/tasks/${id}/follow-up`, { method: "POST", body: { message: say.value, sent_by: F.userName() } });
        say.value = "";
        subscribe();
      } catch (e) {
        if (!(e instanceof F.AuthError)) { sayErr.textContent = e.message; sayErr.hidden = false; }
      } finally { sayBtn.disabled = false; }
    });
    subscribe();
  };
})();
