"""The text Factory puts on GitHub: commit messages and pull-request bodies.

Pure string functions: the workflows call them (so they must stay deterministic) and tests
can read them without Temporal.
"""

from __future__ import annotations

from factory.contracts import TaskInput, WorkflowRunInput, WorkflowRunResult
from factory.domain.review import format_issues
from factory.domain.text import clip_noted

MAX_SUMMARY_CHARS = 6000

NO_CHANGES_NOTE = "The agent made no changes, so no pull request was opened."


def commit_message(inp: TaskInput) -> str:
    """The message of the commit that takes what the agent left uncommitted."""
    return f"{inp.title}\n\nFactory task #{inp.task_id} ({inp.agent.agent_type})"


def pr_body(task_id: int | None, description: str, summary: str, preview_url: str | None = None) -> str:
    """The body of a task's PR: the preview, the task as asked, what the agent said it did."""
    parts = []
    if preview_url:
        parts.append(f"**Preview:** {preview_url}")
    if description.strip():
        parts.append("## Task\n" + description.strip())
    if summary.strip():
        parts.append("## What the agent did\n" + clip_noted(summary.strip(), MAX_SUMMARY_CHARS))
    if task_id is not None:
        parts.append(f"---\nOpened by Factory for task #{task_id}.")
    return "\n\n".join(parts)


def workflow_pr_body(inp: WorkflowRunInput, result: WorkflowRunResult) -> str:
    """The one PR of a workflow run: the not-approved note first, the steps, the last work summary."""
    parts = []
    if result.note:
        parts.append(f"> [!WARNING]\n> {result.note}")
    preview = next((s.preview_url for s in reversed(result.steps) if s.preview_url), None)
    if preview:
        parts.append(f"**Preview:** {preview}")
    if inp.description.strip():
        parts.append("## Task\n" + inp.description.strip())
    lines = [f"## Workflow `{inp.name}` #{inp.run_id}, {result.iterations} iteration(s)"]
    for s in result.steps:
        extra = ""
        if s.verdict:
            extra = f": {s.verdict}" + (f" ({len(s.issues)} issues)" if s.issues else "")
        lines.append(f"- {s.agent_type}, iteration {s.iteration}, task #{s.task_id}{extra}")
    parts.append("\n".join(lines))
    work = [s for s in result.steps if s.verdict is None and s.summary.strip()]
    if work:
        parts.append("## What the agents did\n" + clip_noted(work[-1].summary.strip(), MAX_SUMMARY_CHARS))
    last = next((s for s in reversed(result.steps) if s.verdict is not None), None)
    if last is not None and last.verdict != "approved":
        parts.append(f"## Open issues of the last review (iteration {last.iteration})\n{format_issues(last.issues)}")
    verdict = "approved" if result.approved else ("not approved" if result.approved is False else "no review")
    parts.append(f"---\nOpened by Factory for workflow #{inp.run_id} ({inp.name}); review: {verdict}.")
    return "\n\n".join(parts)
