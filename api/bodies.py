"""What a request body's text may hold, checked and written into its JSON schema.

Every text field refuses NUL (PostgreSQL and SurrealDB cannot store it; pydantic itself refuses
lone surrogates), and a `filled` field must hold more than whitespace. The same rules go into
`/openapi.json` as patterns, so a schema-valid body is never refused for them.
"""

from __future__ import annotations

from typing import Any

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
