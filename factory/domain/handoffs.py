"""The text of handoffs: what one agent's output looks like in the next agent's prompt.

Pure string functions, shared by ConfiguredWorkflow (deterministic) and `POST /api/handoffs`.
"""

from __future__ import annotations

from typing import Any

from factory.contracts import StepOutput, WorkflowRunInput, WorkflowStepSpec
from factory.domain.review import format_issues
from factory.domain.text import clip_noted

MAX_SUMMARY_CHARS = 8000

TEMPLATE_KEYS = ("issues", "summary", "verdict", "changed_files", "diff_stat", "title", "description", "iteration")

REVIEW_INSTRUCTIONS = (
    "Review the change on branch `{branch}` against `{base}`: read the changed files named above and the "
    "code around them. You cannot change files. End your reply with the JSON verdict described in your "
    "instructions, and nothing after it."
)


def handoff_section(
    heading: str,
    summary: str,
    verdict: str | None = None,
    issues: list[dict[str, Any]] | None = None,
    changed_files: list[str] | None = None,
    diff_stat: str = "",
) -> str:
    """One handoff as a prompt section: summary, review verdict and issues, changed files."""
    parts = [f"## {heading}"]
    parts.append(clip_noted((summary or "").strip(), MAX_SUMMARY_CHARS) or "(no summary)")
    if verdict:
        parts.append(f"Review verdict: {verdict}\nIssues:\n{format_issues(issues)}")
    if changed_files:
        shown = changed_files[:200]
        more = f"\n- … and {len(changed_files) - len(shown)} more" if len(changed_files) > len(shown) else ""
        parts.append("Changed files on the branch:\n" + "\n".join(f"- {f}" for f in shown) + more)
    if diff_stat:
        parts.append(f"Diff against the base branch: {diff_stat}")
    return "\n\n".join(parts)


def render_template(template: str, values: dict[str, str]) -> str:
    """Fill `{key}` placeholders of a prompt template; other braces are left as they are."""
    out = template
    for key in TEMPLATE_KEYS:
        if key in values:
            out = out.replace("{" + key + "}", values[key])
    return out


def step_header(name: str, run_id: int, index: int, total: int, agent: str, iteration: int, max_iterations: int) -> str:
    return (
        f"## Workflow step\nThis is step {index + 1} of {total} ({agent}) of workflow {name} #{run_id}, "
        f"iteration {iteration} of at most {max_iterations}. Every step of this workflow works in the same "
        "worktree and branch, so the earlier steps' commits are already here."
    )


def step_context(
    inp: WorkflowRunInput, step: WorkflowStepSpec, iteration: int, source: StepOutput | None, review: StepOutput | None
) -> str:
    """A workflow step's prompt section: where it stands, the handoff it gets, its prompt template.

    Args:
        source: the output handed to this step (its `input`, or the loop step's output after a loop-back).
        review: the latest review of the run, if any.
    """
    agent = step.agent.agent_type
    parts = [step_header(inp.name, inp.run_id, step.index, len(inp.steps), agent, iteration, inp.max_iterations)]
    if source is not None:
        heading = f"Handoff from {source.agent_type} (step {source.step + 1}, iteration {source.iteration})"
        parts.append(
            handoff_section(
                heading, source.summary, source.verdict, source.issues, source.changed_files, source.diff_stat
            )
        )
    if agent == "reviewer" and review is not None and review is not source:
        parts.append(
            f"## Your previous review (iteration {review.iteration}): {review.verdict}\n"
            f"{format_issues(review.issues)}\n\nCheck whether each of these issues is fixed now."
        )
    if step.prompt_template:
        basis = source if source is not None and source.verdict is not None else review
        values = {
            "issues": format_issues(basis.issues if basis else None),
            "verdict": (basis.verdict if basis else None) or "",
            "summary": source.summary if source else "",
            "changed_files": ", ".join(source.changed_files) if source else "",
            "diff_stat": source.diff_stat if source else "",
            "title": inp.title,
            "description": inp.description,
            "iteration": str(iteration),
        }
        parts.append(render_template(step.prompt_template, values))
    return "\n\n".join(parts)


def consumer_of(steps: list[WorkflowStepSpec], step: WorkflowStepSpec) -> str | None:
    """The agent that gets a step's output: the loop target, or the first later step naming it."""
    if step.loop_to:
        target = next(s for s in steps if s.output == step.loop_to)
        return target.agent.agent_type
    if step.output:
        for s in steps[step.index + 1 :]:
            if s.input == step.output:
                return s.agent.agent_type
    return None
