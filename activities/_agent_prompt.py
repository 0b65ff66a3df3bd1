"""What an agent run is told beyond its prompt: memory recall, board messages, an interrupted run's note."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import activity

from factory.contracts import AgentRequest
from factory.store.board import Board
from factory.store.logsink import LogSink

INTERRUPTED = (
    "Your previous run was interrupted because the machine running you restarted. "
    "Continue the task from where you left off; check the working tree first."
)


async def run_prompt(
    req: AgentRequest, prompt: str, resume: bool, interrupted: bool, got: list[int],
    board: Board, memory: Any, logs: LogSink, secrets: list[str],
) -> str:  # fmt: skip
    """The prompt a run gets: board messages always, memory recall only for a fresh run with `with_context`.

    An interrupted run is told so (its earlier attempt's messages were never marked delivered: repeated
    rather than lost); a run resumed with an answer also gets what was posted to its agent while it waited.
    """
    if interrupted:
        prompt, extra = INTERRUPTED, await inbox_section(board, req, got)
    elif not resume:
        extra = await _context(req, got, board, memory, logs, secrets)
    else:
        extra = await inbox_section(board, req, got)
    return f"{prompt}\n\n{extra}" if extra else prompt


async def _context(
    req: AgentRequest, got: list[int], board: Board, memory: Any, logs: LogSink, secrets: list[str]
) -> str:
    """Memory recall and board messages for this agent, added to a fresh prompt."""
    parts = []
    if memory is not None and req.with_context:
        try:
            section = await memory.recall_section(req.title, req.description, req.repo_name)
        except Exception as exc:  # memory never fails a task
            activity.logger.warning("memory recall failed: %s", exc)
            section = ""
        if section:
            parts.append(section)
            # the dashboard shows a task the memories it was given (log kind "memory")
            logs.add(req.task_id, "memory", section, 1, secrets)
    parts.append(await inbox_section(board, req, got))
    return "\n\n".join(p for p in parts if p)


async def inbox_section(board: Board, req: AgentRequest, got: list[int]) -> str:
    """Board messages to this agent type not yet delivered; their ids go to `got`.

    They are marked delivered only when the run finishes (`run_agent`), so an attempt that
    dies on the way leaves them for the retry.
    """
    inbox = await asyncio.to_thread(board.inbox, req.agent.agent_type, req.task_id, req.workflow_run_id)
    got.extend(m.id for m in inbox if m.id is not None)
    if not inbox:
        return ""
    lines = [f"- from {m.sender} ({m.message_type}): {m.content}" for m in inbox]
    return "## Messages for you on the message board\n" + "\n".join(lines)
