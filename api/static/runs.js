// Workflow runs: the list, and a run's page with its steps as a timeline.
"use strict";

(() => {
  const { el } = F;
  const FINISHED = new Set(["completed", "failed", "cancelled"]);
  const POLL_MS = 1500;

  function runRow(r) {
    return el("li", { class: "task-card", dataset: { runId: r.id, status: r.status } },
      el("a", { class: "task-title", href: `#/runs/${r.id}` }, r.title),
      el("div", { class: "meta" }, F.badge(r.status), el("span", { class: "muted" }, `#${r.id}`), el("span", { class: "chip" }, r.name),
        el("span", {}, r.repo), r.iteration ? el("span", {}, `iteration ${r.iteration}`) : null,
        r.pr_url ? F.link(r.pr_url, `PR${r.pr_number ? ` #${r.pr_number}` : ""}`) : null,
        el("span", {}, F.fmtTime(r.created_at))));
  }

  function issueList(issues) {
    if (!issues || !issues.length) return null;
    return el("ul", { class: "issues" }, issues.map((i) => el("li", { class: `sev-${String(i.severity || "").toLowerCase()}` },
      el("span", { class: "badge" }, i.severity || "issue"), " ",
      i.file ? el("code", {}, `${i.file}${i.line ? `:${i.line}` : ""}`) : null, " ",
      i.comment || i.description || JSON.stringify(i))));
  }

  function step(s, handoff) {
    return el("li", { class: `step step-${s.status}`, dataset: { agent: s.agent_type, taskId: s.task_id } },
      el("div", { class: "step-head" },
        el("span", { class: "step-agent" }, s.agent_type),
        s.iteration ? el("span", { class: "chip" }, `iteration ${s.iteration}`) : null,
        F.badge(s.status),
        s.verdict ? el("span", { class: `verdict v-${s.verdict}` }, s.verdict.replace(/_/g, " ")) : null,
        el("a", { href: `#/tasks/${s.task_id}`, class: "step-task" }, `task #${s.task_id}`)),
      issueList(s.issues),
      s.error ? el("p", { class: "error-text" }, s.error) : null,
      (handoff && handoff.summary) || s.summary
        ? el("details", { class: "handoff-text" }, el("summary", {}, "Handoff"), el("pre", { class: "log-text" }, (handoff && handoff.summary) || s.summary))
        : null);
  }

  F.route("runs", async (view, parts) => {
    if (parts.length && parts[0]) return runPage(view, Number(parts[0]));
    const list = el("ol", { class: "cards runs", id: "runs" });
    view.append(F.heading("Workflow runs", el("a", { class: "button", href: "#/new" }, "Start one")), list);
    F.every(POLL_MS * 2, async () => {
      const runs = await F.api("/api/workflows?limit=200");
      list.replaceChildren(...(runs.length ? runs.map(runRow) : [el("li", { class: "empty" }, "No workflow runs yet.")]));
    });
  });

  async function runPage(view, id) {
    if (!Number.isInteger(id) || id < 1) throw new Error("not a run id");
    const head = el("div", { id: "run-head" });
    const timeline = el("ol", { class: "timeline", id: "timeline" });
    view.append(el("p", { class: "crumbs" }, el("a", { href: "#/runs" }, "Workflow runs"), " / ", `#${id}`), head,
      el("section", { class: "panel" }, el("h2", {}, "Steps"), timeline));
    let lastStatus = null;
    let stopped = false;
    const steps = new Map();
    const gen = F.current();
    F.title(`Run #${id}`);
    const poll = async () => {
      const [r, hs] = await Promise.all([F.api(`/api/workflows/${id}`), F.api(`/api/workflows/${id}/handoffs`)]);
      if (gen !== F.current()) return;
      const byId = new Map(hs.map((h) => [h.id, h]));
      // steps by key: an unchanged step is the same node (an open Handoff panel stays open); a changed
      // one is rebuilt with its panel as it was
      const want = r.steps.map((s) => {
        const h = byId.get(s.handoff_id);
        const key = JSON.stringify([s, h && h.summary]);
        let li = steps.get(s.task_id);
        if (!li || li.dataset.key !== key) {
          const open = li ? Boolean(li.querySelector("details[open]")) : false;
          li = step(s, h);
          li.dataset.key = key;
          if (open && li.querySelector("details")) li.querySelector("details").open = true;
          steps.set(s.task_id, li);
        }
        return li;
      });
      const same = want.length === timeline.children.length && want.every((li, i) => timeline.children[i] === li);
      if (!same) timeline.replaceChildren(...(want.length ? want : [el("li", { class: "empty" }, "No step has started yet.")]));
      if (FINISHED.has(r.status)) stopped = true;  // a finished run's page stops asking
      if (lastStatus === r.status && head.contains(document.activeElement)) return;
      lastStatus = r.status;
      const err = el("p", { class: "error-text", role: "alert", hidden: true });
      const cancel = FINISHED.has(r.status) ? null : el("button", { type: "button", class: "danger", id: "run-cancel" }, "Cancel");
      if (cancel) {
        cancel.addEventListener("click", async () => {
          cancel.disabled = true;
          try { await F.api(`/api/workflows/${id}/cancel`, { method: "POST" }); await poll(); } catch (e) { err.textContent = e.message; err.hidden = false; cancel.disabled = false; }
        });
      }
      F.fill(head,
        F.heading(r.title),
        el("div", { class: "status-line" }, F.badge(r.status), el("span", { class: "chip" }, r.name),
          r.current_agent && !FINISHED.has(r.status) ? el("span", { class: "stage" }, `now: ${r.current_agent}`) : null,
          el("span", {}, `iteration ${r.iteration}`), r.approved === true ? el("span", { class: "verdict v-approved" }, "approved") : null),
        el("p", { class: "links" }, el("span", {}, r.repo), r.branch ? el("code", {}, r.branch) : null,
          r.pr_url ? F.link(r.pr_url, `Pull request${r.pr_number ? ` #${r.pr_number}` : ""}`, { id: "run-pr" }) : null,
          F.temporalLink("run", r.id)),
        r.pending_question ? el("p", { class: "card-question" }, "Waiting for an answer: ", r.pending_question.text, " ",
          el("a", { href: `#/tasks/${r.pending_question.task_id}` }, "answer it")) : null,
        r.error ? el("p", { class: "error-text" }, r.error) : null,
        r.note ? el("p", { class: "note" }, r.note) : null,
        el("div", { class: "actions" }, cancel), err);
    };
    await poll();
    F.every(POLL_MS, async () => { if (!stopped) await poll(); });
  }
})();
