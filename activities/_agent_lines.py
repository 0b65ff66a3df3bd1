"""The protocol lines an agent prints in its text (message, learning, question), whichever backend ran it."""

from __future__ import annotations

from typing import Any

from activities._protocol import clean_text, message_fields
from factory.contracts import AgentRequest, AgentResult, QuestionAsked
from factory.domain.redact import scrub
from factory.store.board import Board


async def protocol_line(
    board: Board, req: AgentRequest, obj: dict[str, Any], result: AgentResult, secrets: list[str]
) -> QuestionAsked | None:
    """One protocol line, as data: its values are checked (activities/_protocol.py), never trusted to fit."""
    kind = obj.get("type")
    if kind == "message":
        fields = message_fields(obj, req.task_id)
        if fields is not None:
            sender, where = req.agent.agent_type, {"task_id": req.task_id, "workflow_run_id": req.workflow_run_id}
            await board.publish(sender=sender, **fields, **where)
    elif kind == "learning":
        content = clean_text(obj.get("content"))
        if content:
            result.learnings.append(scrub(content, secrets))
    elif kind == "question":
        asked = clean_text(obj.get("question"))
        if asked:
            opts = obj.get("options")
            options = [clean_text(o, 500) for o in opts[:20]] if isinstance(opts, list) and opts else None
            return QuestionAsked(text=scrub(asked, secrets), options=options)
    return None
