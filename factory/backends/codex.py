"""Codex CLI (`codex exec --json`; `codex exec resume <thread id>`), behind Factory's sandbox and gateway.

Codex runs with its own sandbox off (`--dangerously-bypass-approvals-and-sandbox`): its nested
bubblewrap fails inside Factory's namespaces and can exit 0 having run nothing, so a turn counts as
done only when a `turn.completed` was seen (no result line otherwise: activities/agent.py then fails
the run as "no_result"). Factory's sandbox contains it; a read-only agent type gets its checkout bound
read-only (Codex has no per-tool list). Its model endpoint is the gateway's OpenAI route and its key
the run's stand-in; it has no cost or turn cap of its own: the gateway meters its tokens and refuses
requests past the budget.

What it trusts: the thread id (only as a resume argument and a file-name glob of the task's home),
nothing else from the stream as a figure; `CODEX_HOME` is the task's home, written by the agent, so
a `config.toml` there (the agent's) is removed before each turn and every setting Factory needs is
given on the command line, which wins over the file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from factory.backends import Turn
from factory.backends.claude import BackendUnavailable
from factory.config import FactoryConfig
from factory.domain.streamjson import LogEntry, ParsedLine
from factory.domain.text import clip_noted
from factory.processes import which

DEFAULT_MODEL = "gpt-5-codex"
_ID = re.compile(r"[0-9A-Za-z-]{8,64}")


class CodexParser:
    """`codex exec --json` events onto Factory's events; a Claude-shaped result on the turn's end."""

    def __init__(self, session_id: str) -> None:
        self.thread = ""
        self.last_text = ""
        self.steps = 0

    def parse(self, line: str) -> ParsedLine:
        out = ParsedLine()
        s = line.strip()
        if not s:
            return out
        try:
            ev = json.loads(s)
        except ValueError:
            ev = None
        if not isinstance(ev, dict):
            out.logs.append(LogEntry("stdout", clip_noted(s, 2000)))
            return out
        t = str(ev.get("type", ""))
        if t == "thread.started" and isinstance(ev.get("thread_id"), str) and _ID.fullmatch(ev["thread_id"]):
            self.thread = ev["thread_id"]
            out.session_id = self.thread
            out.logs.append(LogEntry("system", f"codex thread {self.thread}"))
        elif t.startswith("item.") and isinstance(ev.get("item"), dict):
            self._item(t, ev["item"], out)
        elif t == "turn.completed":
            out.result = self._result("success", False, self.last_text)
            out.logs.append(LogEntry("result", f"success turns={self.steps}\n{clip_noted(self.last_text, 3000)}"))
        elif t == "turn.failed":
            err = ev.get("error") if isinstance(ev.get("error"), dict) else {}
            text = str(err.get("message") or "codex turn failed")
            out.result = self._result("error_during_execution", True, text)
            out.logs.append(LogEntry("result", f"error_during_execution\n{clip_noted(text, 3000)}"))
        elif t == "error":
            out.logs.append(LogEntry("error", clip_noted(str(ev.get("message", "")), 2000)))
        return out

    def _item(self, t: str, item: dict[str, Any], out: ParsedLine) -> None:
        kind = item.get("type")
        if kind == "agent_message" and t == "item.completed":
            text = str(item.get("text") or "")
            self.last_text = text
            self.steps += 1
            out.texts.append(text)
            out.logs.append(LogEntry("assistant", clip_noted(text, 4000)))
        elif kind == "command_execution":
            if t == "item.started":
                out.logs.append(LogEntry("tool_use", f"exec: {clip_noted(item.get('command'), 1500)}"))
            elif t == "item.completed":
                self.steps += 1
                code = item.get("exit_code")
                prefix = "" if code == 0 else f"error (exit {code}): "
                out.logs.append(LogEntry("tool_result", prefix + clip_noted(item.get("aggregated_output") or "", 2000)))
        elif kind == "file_change" and t == "item.completed":
            changes = item.get("changes") if isinstance(item.get("changes"), list) else []
            names = ", ".join(f"{c.get('kind')} {c.get('path')}" for c in changes if isinstance(c, dict))
            out.logs.append(LogEntry("tool_use", f"file_change: {clip_noted(names, 1500)}"))
        elif kind == "mcp_tool_call" and t == "item.completed":
            out.logs.append(
                LogEntry(
                    "tool_use", f"{item.get('server')}.{item.get('tool')}: {clip_noted(item.get('arguments'), 1500)}"
                )
            )
        elif kind in ("reasoning", "todo_list", "error", "web_search") and t == "item.completed":
            text = item.get("text") or item.get("message") or item.get("items") or item.get("query")
            out.logs.append(LogEntry("thinking" if kind == "reasoning" else str(kind), clip_noted(text, 1500)))

    def _result(self, subtype: str, is_error: bool, text: str) -> dict[str, Any]:
        return {
            "type": "result", "subtype": subtype, "is_error": is_error, "result": text,
            "session_id": self.thread or None, "num_turns": max(1, self.steps),
        }  # fmt: skip


class CodexBackend:
    name = "codex"
    api = "openai"
    needs_read_only_checkout = True  # no per-tool list: a reviewer's checkout is bound read-only
    install_hint = "npm install -g @openai/codex@0.171.0, or set backends.codex.command"

    def __init__(self, cfg: FactoryConfig) -> None:
        own = cfg.backends.get("codex")
        self.command_name = own.command if own is not None and own.command else "codex"
        self.model = (own.model if own is not None else None) or DEFAULT_MODEL
        self.extra = list(own.extra_args) if own is not None else []

    def command(self, turn: Turn) -> list[str]:
        codex = which(self.command_name)
        if not codex:
            raise BackendUnavailable(f"the Codex CLI ({self.command_name!r}) is not on PATH: {self.install_hint}")
        _drop_agent_config(turn.home / ".codex")
        spec, req = turn.req.agent, turn.req
        cmd = [codex, "exec"]
        if turn.resume:
            cmd += ["resume", req.session_id]
        cmd += ["--json", "-m", spec.model or self.model, "--dangerously-bypass-approvals-and-sandbox"]
        cmd += ["--skip-git-repo-check"]
        # Factory's own provider: the gateway's Responses route, the stand-in from CODEX_API_KEY, and no
        # WebSocket attempt (against a server without one Codex retried it for ~6 s before using SSE)
        url = json.dumps(turn.model_url + "/v1")
        for setting in (
            'model_provider="factory"', 'model_providers.factory.name="Factory gateway"',
            f"model_providers.factory.base_url={url}", 'model_providers.factory.env_key="CODEX_API_KEY"',
            'model_providers.factory.wire_api="responses"', "model_providers.factory.supports_websockets=false",
        ):  # fmt: skip
            cmd += ["-c", setting]
        cmd += ["-c", f"developer_instructions={json.dumps(turn.system_prompt)}"]
        cmd += ["-c", "project_doc_max_bytes=0"]  # the checkout's AGENTS.md is the agent's to read, not a prompt
        cmd += ["-c", "analytics.enabled=false", "-c", "check_for_update_on_startup=false"]
        cmd += self.extra + list(spec.extra_args)
        return [*cmd, "-"]  # the prompt on stdin

    def environment(self, turn: Turn) -> dict[str, str]:
        # the stand-in under both names Codex reads (exec prefers CODEX_API_KEY); never the real key
        return {
            "CODEX_HOME": str(turn.home / ".codex"),
            "CODEX_API_KEY": turn.stand_in,
            "OPENAI_API_KEY": turn.stand_in,
        }

    def session_saved(self, home: Path, session_id: str) -> bool:
        if not _ID.fullmatch(session_id):
            return False
        return any((home / ".codex" / "sessions").glob(f"*/*/*/rollout-*-{session_id}.jsonl"))

    def parser(self, session_id: str) -> CodexParser:
        return CodexParser(session_id)


def _drop_agent_config(codex_home: Path) -> None:
    """Remove a `config.toml` the agent left in its home (never followed: unlink removes a link itself)."""
    codex_home.mkdir(parents=True, exist_ok=True)
    for name in ("config.toml", "managed_config.toml"):
        try:
            os.unlink(codex_home / name)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            shutil.rmtree(codex_home / name, ignore_errors=True)
