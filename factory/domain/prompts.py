"""The prompt a task's agent starts from (its system prompt lives in `prompts/`)."""

from __future__ import annotations

from factory.contracts import TaskInput


def task_prompt(inp: TaskInput, branch: str) -> str:
    """The task as the agent reads it: title, description, handed-on context, then what to do.

    `{branch}` anywhere in it (the closing instruction, a reviewer's instructions) names the
    worktree's branch.
    """
    parts = [f"# Task #{inp.task_id}: {inp.title}"]
    if inp.description.strip():
        parts.append(inp.description.strip())
    if inp.context.strip():
        parts.append(inp.context.strip())
    parts.append(
        inp.instructions
        or f"You are working in a git worktree of {inp.repo.name} on branch `{{branch}}`. "
        "Make the change, run what checks you can, and end with a short summary of what you did."
    )
    return "\n\n".join(parts).replace("{branch}", branch)
