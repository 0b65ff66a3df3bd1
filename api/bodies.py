"""What a request body's text may hold, checked and written into its JSON schema.

Every text field refuses NUL (PostgreSQL and SurrealDB cannot store it; pydantic itself refuses
lone surrogates), and a `filled` field must hold more than whitespace. The same rules go into
`/openapi.json` as patterns, so a schema-valid body is never refused for them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_FILLED = r"\S"  # marks a field that must hold more than whitespace (its validator says so by name)
_NO_NUL = r"^[^\x00]*$"
_FILLED_NO_NUL = r"^[^\x00]*[^\s\x00][^\x00]*$"


def filled(max_length: int, description: str | None = None) -> Any:
    """A required text field that must hold more than whitespace."""
    return Field(min_length=1, max_length=max_length, description=description, json_schema_extra={"pattern": _FILLED})


def _document_text_rules(schema: dict[str, Any]) -> None:
    """Put the rules `Body` checks by hand into its JSON schema, as patterns: no NUL, not blank."""

    def mark(s: dict[str, Any]) -> None:
        if s.get("type") == "string":
            s["pattern"] = _FILLED_NO_NUL if s.get("pattern") == _FILLED else _NO_NUL
        elif s.get("type") == "array" and isinstance(s.get("items"), dict):
            mark(s["items"])
        for alt in s.get("anyOf", []):
            mark(alt)

    for prop in schema.get("properties", {}).values():
        mark(prop)


def _storable(v: Any) -> Any:
    """Reject NUL characters, which PostgreSQL and SurrealDB cannot store (pydantic itself refuses lone surrogates)."""
    for s in v if isinstance(v, list) else [v]:
        if isinstance(s, str) and "\x00" in s:
            raise ValueError("must not contain NUL characters")
    return v


class Body(BaseModel):
    """A request body whose text fields hold only text every store and every client can take."""

    model_config = ConfigDict(json_schema_extra=_document_text_rules)

    @field_validator("*")
    @classmethod
    def _storable_text(cls, v: Any) -> Any:
        return _storable(v)


MessageType = Literal["info", "question", "handoff", "status", "error"]

MAX_ID = 2**63 - 1
"""The largest id a row can have: SQLite's INTEGER (and PostgreSQL's BIGINT) is a signed 64-bit number."""
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
"""A row id in a request body (a larger number would overflow the database's query)."""


# --- request bodies -------------------------------------------------------------------------------------


class TaskCreate(Body):
    title: str = filled(500)
    description: str = Field(default="", max_length=100_000)
    repo: str = filled(300)
    agent_type: str | None = Field(default=None, max_length=100)
    backend: Literal["claude", "codex", "opencode"] | None = None  # overrides the agent template's CLI

    @field_validator("title")
    @classmethod
    def _title(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("title must not be empty")
        return v


class AnswerBody(Body):
    answer: str = filled(50_000)
    question_id: Id | None = None
    answered_by: str = Field(default="user", max_length=200)


class HandoffCreate(Body):
    from_task_id: Id
    to_agent: str = filled(100)
    context: str = Field(default="", max_length=50_000, description="what the next agent should do or know")
    title: str | None = Field(default=None, max_length=500)


class CodeReviewCreate(Body):
    title: str = filled(500)
    description: str = Field(default="", max_length=100_000)
    repo: str = filled(300)


class WorkflowCreate(CodeReviewCreate):
    name: str = filled(200)


class MessageCreate(Body):
    sender: str = Field(default="user", min_length=1, max_length=100)
    to: str | None = Field(default=None, max_length=100)
    content: str = filled(50_000)
    message_type: MessageType = "info"
    task_id: Id | None = None
    workflow_id: Id | None = None
    reply_to: Id | None = None

    @field_validator("content")
    @classmethod
    def _content(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("content must not be empty")
        return v

    @field_validator("sender", "to")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        return v.strip() or None if v is not None else None


class NoteCreate(Body):
    repo: str = filled(300)
    title: str | None = Field(default=None, max_length=500)
    content: str = filled(50_000)
    learnings: list[Annotated[str, Field(max_length=2_000)]] = Field(default_factory=list, max_length=50)

    @field_validator("content")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v
