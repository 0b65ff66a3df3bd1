// A task's page: status and stage, the agent's output streaming live (a log cursor, so a reload
// or a dropped connection loses nothing), the branch diff, links, the pending question, past
// answers, handoffs, recalled memories, and the actions run / cancel / retry / hand off.
"use strict";

(() => {
  const { el } = F;
  const FINISHED = new Set(["done", "failed", "cancelled"]);
  const TASK_MS = 1500;
  const LOG_MS = 1000;

  // ---- output ------------------------------------------------------------------------------
  function logItem(entry) {
    const kind = entry.kind;
    const time = el("time", { class: "log-time", datetime: entry.created_at }, F.fmtTime(entry.created_at));
    if (kind === "tool_use" || kind === "tool_result") {
      const name = kind === "tool_use" ? entry.content.split(":", 1)[0] : "result";
      return el("li", { class: `log log-${kind}`, dataset: { id: entry.id } },
        el("details", {}, el("summary", {}, time, el("span", { class: "log-kind" }, kind === "tool_use" ? "tool" : "tool result"), " ", name),
          el("pre", { class: "log-text" }, entry.content)));
    }
    return el("li", { class: `log log-${kind}`, dataset: { id: entry.id } },
      time, el("span", { class: "log-kind" }, kind), el("pre", { class: "log-text" }, entry.content));
  }

  // ---- diff --------------------------------------------------------------------------------
  // A small hand-written colouring: lines by their diff role, and in code lines strings,
  // comments and keywords. Each piece becomes a text node inside a <span>.
  const KEYWORDS = /\b(def|class|return|if|elif|else|for|while|import|from|as|with|try|except|finally|raise|async|await|function|const|let|var|new|true|false|null|None|True|False|yield|lambda|in|not|and|or|export|type|interface|fn|pub|struct|impl|match)\b/g;
  const TOKENS = /("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`)|(#.*$|\/\/.*$)|(\b\d+(?:\.\d+)?\b)/g;

  function colourCode(text) {
    const out = [];
    let last = 0;
    for (const m of text.matchAll(TOKENS)) {
      if (m.index > last) out.push(...keywords(text.slice(last, m.index)));
      const cls = m[1] ? "tok-str" : m[2] ? "tok-com" : "tok-num";
      out.push(el("span", { class: cls }, m[0]));
      last = m.index + m[0].length;
    }
    if (last < text.length) out.push(...keywords(text.slice(last)));
    return out;
  }
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
  function patchView(patch) {
    const pre = el("pre", { class: "patch", tabindex: "0", "aria-label": "The patch" });
    for (const line of patch.split("\n")) {
      let cls = "ctx";
      if (line.startsWith("diff --git") || line.startsWith("index ") || line.startsWith("--- ") || line.startsWith("+++ ")) cls = "file";
      else if (line.startsWith("@@")) cls = "hunk";
      else if (line.startsWith("+")) cls = "add";
      else if (line.startsWith("-")) cls = "del";
      const body = cls === "add" || cls === "del" || cls === "ctx" ? [line.slice(0, 1), ...colourCode(line.slice(1))] : [line];
      pre.append(el("span", { class: `pl pl-${cls}` }, body), "\n");
    }
    return pre;
  }
  function diffView(d) {
    return el("div", { class: "diff" },
      el("p", { class: "diff-sum" }, `${d.files.length} file${d.files.length === 1 ? "" : "s"} changed on `, el("code", {}, d.branch),
        " against ", el("code", {}, d.base), " ", el("span", { class: "add-n" }, `+${d.additions}`), " ", el("span", { class: "del-n" }, `−${d.deletions}`)),
      el("table", { class: "diff-files" }, el("tbody", {}, d.files.map((f) => el("tr", {},
        el("td", { class: "path" }, f.path),
        el("td", { class: "add-n" }, f.additions === null ? "bin" : `+${f.additions}`),
        el("td", { class: "del-n" }, f.deletions === null ? "" : `−${f.deletions}`))))),
      d.truncated ? el("p", { class: "note" }, "The patch is long: only its beginning is shown.") : null,
      patchView(d.patch));
  }

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
    const act = (label, path, body, cls = "") => {
      const b = el("button", { type: "button", class: cls, id: `action-${label.toLowerCase().replace(/\s+/g, "-")}` }, label);
      b.addEventListener("click", async () => {
        b.disabled = true;
        err.hidden = true;
        try {
          const res = await F.api(path, { method: "POST", body: body ? body() : undefined });
          if (res && res.task && res.task.id !== t.id) F.go(`#/tasks/${res.task.id}`); else refresh();
        } catch (e) {
          err.textContent = e.message;
          err.hidden = false;
        } finally { b.disabled = false; }
      });
      return b;
    };
    if (t.status === "queued") out.append(act("Run", `/api/tasks/${t.id}/run`));
    if (!FINISHED.has(t.status)) out.append(act("Cancel", `/api/tasks/${t.id}/cancel`, null, "danger"));
    if ((t.status === "failed" || t.status === "cancelled") && !t.workflow_run_id) out.append(act("Retry", `/api/tasks/${t.id}/retry`));
    if (FINISHED.has(t.status) && t.branch) {
      const to = el("select", { id: "handoff-agent", "aria-label": "Hand off to" }, F.info.agent_types.map((a) => el("option", { value: a }, a)));
      const ctx = el("input", { id: "handoff-context", type: "text", placeholder: "what the next agent should do", "aria-label": "Handoff context" });
      out.append(el("span", { class: "handoff" }, to, ctx,
        act("Hand off", "/api/handoffs", () => ({ from_task_id: t.id, to_agent: to.value, context: ctx.value }), "ghost")));
    }
    return [out, err];
  }

  // ---- the page ------------------------------------------------------------------------------
  F.taskPage = async (view, id) => {
    if (!Number.isInteger(id) || id < 1) throw new Error("not a task id");
    const head = el("div", { id: "task-head" });
    const question = el("div", { id: "question-slot" });
    const logList = el("ol", { class: "logs", id: "logs", "aria-live": "polite" });
    const logBox = el("div", { class: "log-box", tabindex: "0", "aria-label": "The agent's output" }, logList);
    const logEmpty = el("p", { class: "empty", id: "logs-empty" }, "No output yet.");
    const diffSlot = el("div", { id: "diff" }, el("p", { class: "empty" }, "The diff appears once the branch is pushed."));
    const diffBtn = el("button", { type: "button", class: "ghost small", id: "diff-refresh" }, "Refresh diff");
    const qa = el("div", { id: "past-qa" });
    const handoffs = el("div", { id: "handoffs" });
    const memories = el("div", { id: "memories" });
    view.append(
      el("p", { class: "crumbs" }, el("a", { href: "#/tasks" }, "Tasks"), " / ", `#${id}`),
      head, question,
      el("div", { class: "task-grid" },
        el("section", { class: "panel output" }, el("h2", {}, "Output"), logEmpty, logBox),
        el("aside", { class: "side" },
          el("section", { class: "panel" }, el("h2", {}, "Questions and answers"), qa),
          el("section", { class: "panel" }, el("h2", {}, "Handoffs"), handoffs),
          el("section", { class: "panel" }, el("h2", {}, "Memories recalled"), memories))),
      el("section", { class: "panel" }, el("div", { class: "page-head" }, el("h2", {}, "Changes"), diffBtn), diffSlot));

    let task = null;
    let stage = null;
    let cursor = 0;
    let diffFor = "";
    let lastQ = null;
    const gen = F.current();

    const loadDiff = async () => {
      if (!task || !task.branch) return;
      try {
        const d = await F.api(`/api/tasks/${id}/diff`);
        diffSlot.replaceChildren(diffView(d));
      } catch (e) {
        if (!(e instanceof F.AuthError)) diffSlot.replaceChildren(el("p", { class: "empty" }, e.message));
      }
    };
    diffBtn.addEventListener("click", loadDiff);

    const drawHead = () => {
      const t = task;
      const [acts, err] = actions(t, () => pollTask());
      const dur = F.taskDuration(t);
      F.fill(head,
        F.heading(t.title),
        el("div", { class: "status-line" }, F.badge(t.status), stage && !FINISHED.has(t.status) ? el("span", { class: "stage", id: "stage" }, `stage: ${stage}`) : null),
        el("dl", { class: "facts" },
          el("dt", {}, "Repo"), el("dd", {}, t.repo),
          el("dt", {}, "Agent"), el("dd", {}, t.agent_type),
          el("dt", {}, "Branch"), el("dd", {}, t.branch ? el("code", {}, t.branch) : "–", t.base_branch ? ` from ${t.base_branch}` : ""),
          el("dt", {}, "Cost"), el("dd", { id: "task-cost" }, F.fmtCost(t.cost_usd)),
          el("dt", {}, "Turns"), el("dd", {}, String(t.num_turns)),
          el("dt", {}, "Duration"), el("dd", {}, F.fmtDuration(dur)),
          el("dt", {}, "Created"), el("dd", {}, F.fmtTime(t.created_at)),
          t.workflow_run_id ? [el("dt", {}, "Workflow"), el("dd", {}, el("a", { href: `#/runs/${t.workflow_run_id}` }, `run #${t.workflow_run_id}`), t.iteration ? ` iteration ${t.iteration}` : "")] : null,
          t.parent_task_id ? [el("dt", {}, "From"), el("dd", {}, el("a", { href: `#/tasks/${t.parent_task_id}` }, `task #${t.parent_task_id}`))] : null),
        el("p", { class: "links" },
          t.pr_url ? F.link(t.pr_url, `Pull request${t.pr_number ? ` #${t.pr_number}` : ""}`, { id: "pr-link" }) : null,
          t.preview_url ? F.link(t.preview_url, "Preview", { id: "preview-link" }) : null,
          t.workflow_run_id ? null : F.temporalLink("task", t.id)),
        t.error ? el("p", { class: "error-text", id: "task-error" }, t.error) : null,
        t.note ? el("p", { class: "note" }, t.note) : null,
        t.result && FINISHED.has(t.status) ? el("details", { class: "result", open: t.status === "done" }, el("summary", {}, "Final reply"), el("pre", { class: "log-text" }, t.result)) : null,
        acts, err);
    };

    const pollTask = async () => {
      const [t, st] = await Promise.all([
        F.api(`/api/tasks/${id}`),
        F.api(`/api/tasks/${id}/stage`).catch(() => ({ stage: null })),
      ]);
      if (gen !== F.current()) return;
      const changed = !task || task.status !== t.status;
      task = t;
      stage = st.stage;
      // keep a focused control (an answer being typed, a handoff being chosen) untouched
      if (!head.contains(document.activeElement) || changed) drawHead();
      const qid = t.pending_question ? t.pending_question.id : null;
      if (qid !== lastQ) {
        lastQ = qid;
        question.replaceChildren(t.pending_question ? questionBox(t, () => pollTask()) : "");
      }
      if (changed || FINISHED.has(t.status)) {
        const [qs, hs] = await Promise.all([F.api(`/api/tasks/${id}/questions`), F.api(`/api/tasks/${id}/handoffs`)]);
        qa.replaceChildren(qs.length ? el("ol", { class: "qa" }, qs.map((q) => el("li", {},
          el("p", { class: "q" }, q.text), q.options ? el("p", { class: "muted" }, `options: ${q.options.join(" · ")}`) : null,
          el("p", { class: "a" }, q.answer ? [q.answer, el("span", { class: "muted" }, ` — ${q.answered_by || ""}, ${F.fmtTime(q.answered_at)}`)] : `(${q.status})`)))) : el("p", { class: "empty" }, "None."));
        handoffs.replaceChildren(hs.length ? el("ol", { class: "qa" }, hs.map((h) => el("li", {},
          el("p", {}, `${h.from_agent} → ${h.to_agent || "–"} `,
            h.from_task_id && h.from_task_id !== id ? el("a", { href: `#/tasks/${h.from_task_id}` }, `from #${h.from_task_id}`) : null, " ",
            h.to_task_id && h.to_task_id !== id ? el("a", { href: `#/tasks/${h.to_task_id}` }, `to #${h.to_task_id}`) : null),
          h.summary ? el("pre", { class: "log-text" }, h.summary) : null))) : el("p", { class: "empty" }, "None."));
      }
      const key = `${t.status}:${t.branch}`;
      if (FINISHED.has(t.status) && t.branch && diffFor !== key) {
        diffFor = key;
        await loadDiff();
      }
    };

    const pollLogs = async () => {
      for (let page = 0; page < 10; page++) {
        const rows = await F.api(`/api/tasks/${id}/logs?since=${cursor}&limit=500`);
        if (gen !== F.current() || !rows.length) return;
        const box = logBox;
        const atEnd = box.scrollTop + box.clientHeight >= box.scrollHeight - 40;
        for (const r of rows) {
          cursor = Math.max(cursor, r.id);
          if (r.kind === "memory") memories.replaceChildren(el("pre", { class: "log-text" }, r.content));
          else logList.append(logItem(r));
        }
        logEmpty.hidden = logList.children.length > 0;
        if (atEnd) box.scrollTop = box.scrollHeight;
        if (rows.length < 500) return;
      }
    };

    memories.replaceChildren(el("p", { class: "empty" }, "None."));
    await pollTask();
    F.every(TASK_MS, pollTask);
    F.every(LOG_MS, pollLogs);
  };
})();
