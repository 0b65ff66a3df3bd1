"""Error answers: FastAPI's `{"detail": ...}` shape, declared in the OpenAPI document, always encodable.

A validation error echoes what was wrong, but never the whole input (a 5 MB title), and never a
value JSON cannot carry (NaN, Infinity, a lone surrogate): such an echo used to turn a 422 into a 500.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from factory.domain.text import clip

ECHO_CHARS = 120  # of one string in an echoed input
ECHO_ITEMS = 10  # of one list or object in an echoed input
ECHO_DEPTH = 2
DETAIL_CHARS = 2_000


class Problem(BaseModel):
    """What went wrong, in FastAPI's shape."""

    detail: str = Field(description="what is wrong, and where it applies, what to do")


class FieldProblem(BaseModel):
    """One invalid input: where it is, what is wrong, and (clipped) what was sent."""

    type: str
    loc: list[str | int]
    msg: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class ValidationProblem(Problem):
    """Invalid input: `detail` sums it up; `errors` lists each problem when the request did not validate."""

    errors: list[FieldProblem] | None = None


_WHY = {
    400: ("the body is not what this sender sends (not JSON, not an object, no event)", Problem),
    401: ("missing or wrong bearer token (`Authorization: Bearer <FACTORY_AUTH_TOKEN>`)", Problem),
    403: ("the sender's signature or secret is missing or wrong, or webhooks of this kind are refused", Problem),
    404: ("no such thing (the message names it)", Problem),
    409: ("the request does not fit the current state (the message says why)", Problem),
    413: ("the request body is larger than `max_body_bytes`", Problem),
    422: ("invalid input (the message names each problem)", ValidationProblem),
    503: ("a service this needs is unavailable (the message names it: Temporal, memory)", Problem),
}


def responses(*codes: int, **override: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` of these error codes; `override={"503": Model}` gives one code another body."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        why, model = _WHY[code]
        out[code] = {"description": why, "model": override.get(str(code), model)}
    return out


def _text(value: str, limit: int) -> str:
    # a lone surrogate cannot be encoded as UTF-8: show it escaped instead
    return clip(value.encode("utf-8", "backslashreplace").decode("utf-8"), limit)


def echo(value: Any, depth: int = 0) -> Any:
    """`value` made short and JSON-safe, to be shown back in an error."""
    if isinstance(value, str):
        return _text(value, ECHO_CHARS)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if abs(value) < 10**30 else f"<an integer of {value.bit_length()} bits>"
    if isinstance(value, dict | list | tuple) and depth >= ECHO_DEPTH:
        return "…"
    if isinstance(value, dict):
        return {_text(str(k), ECHO_CHARS): echo(v, depth + 1) for k, v in list(value.items())[:ECHO_ITEMS]}
    if isinstance(value, list | tuple):
        return [echo(v, depth + 1) for v in list(value)[:ECHO_ITEMS]]
    return _text(str(value), ECHO_CHARS)


def _problem(e: dict[str, Any]) -> FieldProblem:
    loc = [x if isinstance(x, int) else _text(str(x), ECHO_CHARS) for x in e.get("loc", ())]
    ctx = e.get("ctx")
    return FieldProblem(
        type=str(e.get("type", "value_error")),
        loc=loc,
        msg=_text(str(e.get("msg", "")), 500),
        input=echo(e.get("input")),
        ctx={str(k): echo(v) for k, v in ctx.items()} if isinstance(ctx, dict) else None,
    )


async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each invalid input, e.g. `query.limit: Input should be less than or equal to 1000`."""
    problems = [_problem(e) for e in exc.errors()]
    summary = []
    for p in problems:
        where = ".".join(str(x) for x in p.loc if x != "body")
        msg = p.msg.removeprefix("Value error, ")
        if p.type == "json_invalid":  # its loc is a character offset, not a field
            where, msg = "body", f"invalid JSON: {(p.ctx or {}).get('error', msg)}"
        summary.append(f"{where}: {msg}" if where else msg)
    body = ValidationProblem(detail=_text("; ".join(summary), DETAIL_CHARS), errors=problems)
    return JSONResponse(body.model_dump(mode="json"), status_code=422)


def status_handler(code: int) -> Any:
    """An exception handler answering `code` with the exception's message as `detail`."""

    async def handler(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": _text(str(exc), DETAIL_CHARS)}, status_code=code)

    return handler


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


class _JSONRequest(Request):
    """A request whose JSON body must be strict JSON: UTF-8, no NaN/Infinity, parseable by `json`."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
            except json.JSONDecodeError:
                raise
            except UnicodeDecodeError as exc:
                raise json.JSONDecodeError(f"the body is not UTF-8 ({exc.reason})", "", exc.start) from exc
            except (ValueError, RecursionError) as exc:  # NaN, a number of thousands of digits, deep nesting
                raise json.JSONDecodeError(_text(str(exc) or type(exc).__name__, 200), "", 0) from exc
        return self._json


class JSONRoute(APIRoute):
    """A route that reads strict JSON, so a body JSON cannot carry is a 422 naming why, never a 400 or a 500."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_JSONRequest(request.scope, request.receive))

        return strict
