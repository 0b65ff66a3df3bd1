"""OpenCode (`opencode run --format json`; `--session <id>` to resume), behind Factory's sandbox and gateway.

Its whole configuration is Factory's, given in `OPENCODE_CONFIG_CONTENT`: one provider
(`@ai-sdk/openai-compatible`, bundled with the CLI, so nothing is fetched) whose `baseURL` is the
gateway's chat-completions route and whose key is the run's stand-in, and per-tool permissions from
the agent type (a reviewer: edit, write, patch and bash denied). The checkout's `opencode.json`
and `.opencode/` are the agent's: OpenCode merges the project's config over the others, so a
read-only agent type also gets its checkout bound read-only (docs: factory/backends/__init__.py),
and `OPENCODE_DISABLE_PROJECT_CONFIG` asks it not to read them. Its global config directory
(`$XDG_CONFIG_HOME/opencode`, in the task's home, which the agent writes) is removed before each turn:
OpenCode merges it under Factory's, so a planted `mcp` server or `plugin` would otherwise run next turn.

What it trusts: the session id (`ses_…`, checked by pattern) as a resume argument; `step_finish`'s
cost and tokens are a hint for the log only — the gateway's meter is the ledger's figure.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from factory.backends import Turn, read_only_agent
from factory.backends.claude import BackendUnavailable
from factory.config import FactoryConfig
from factory.domain.streamjson import LogEntry, ParsedLine
from factory.domain.text import clip_noted
from factory.processes import which

DEFAULT_MODEL = "gpt-5"
_SESSION = re.compile(r"ses_[0-9A-Za-z]{8,64}")
_WRITE_TOOLS = ("edit", "write", "patch", "bash", "multiedit")


class OpenCodeParser:
    """`opencode run --format json` events onto Factory's events; a result on the last `step_finish`."""

    def __init__(self, session_id: str) -> None:
        self.session = ""
        self.last_text = ""
        self.steps = 0
        self.finished = False

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
        sid = ev.get("sessionID")
        if isinstance(sid, str) and _SESSION.fullmatch(sid) and not self.session:
            self.session = sid
            out.session_id = sid
            out.logs.append(LogEntry("system", f"opencode session {sid}"))
        part = ev.get("part") if isinstance(ev.get("part"), dict) else {}
        t = ev.get("type")
        if t == "text":
            text = str(part.get("text") or "")
            self.last_text = text
            out.texts.append(text)
            out.logs.append(LogEntry("assistant", clip_noted(text, 4000)))
        elif t == "tool_use":
            state = part.get("state") if isinstance(part.get("state"), dict) else {}
            out.logs.append(LogEntry("tool_use", f"{part.get('tool')}: {clip_noted(state.get('input'), 1500)}"))
            err = state.get("status") == "error"
            text = state.get("error") if err else state.get("output")
            out.logs.append(LogEntry("tool_result", ("error: " if err else "") + clip_noted(text or "", 2000)))
        elif t == "step_finish":
            self.steps += 1
            reason = part.get("reason")
            out.logs.append(LogEntry("event", f"step {self.steps} {reason} (opencode's cost hint: {part.get('cost')})"))
            if reason == "stop":
                out.result = self._result("success", False, self.last_text)
        elif t == "error":
            err = ev.get("error") if isinstance(ev.get("error"), dict) else {}
            data = err.get("data") if isinstance(err.get("data"), dict) else {}
            text = str(data.get("message") or err.get("name") or "opencode error")
            out.logs.append(LogEntry("error", clip_noted(text, 2000)))
            out.result = self._result("error_during_execution", True, text)
        return out

    def _result(self, subtype: str, is_error: bool, text: str) -> dict[str, Any]:
        return {
            "type": "result", "subtype": subtype, "is_error": is_error, "result": text,
            "session_id": self.session or None, "num_turns": max(1, self.steps),
        }  # fmt: skip


class OpenCodeBackend:
    name = "opencode"
    api = "openai"
    needs_read_only_checkout = True  # the project's config is read from the checkout: a reviewer's is read-only
    install_hint = "npm install -g opencode-ai@1.18.33, or set backends.opencode.command"

    def __init__(self, cfg: FactoryConfig) -> None:
        own = cfg.backends.get("opencode")
        self.command_name = own.command if own is not None and own.command else "opencode"
        self.model = (own.model if own is not None else None) or DEFAULT_MODEL
        self.extra = list(own.extra_args) if own is not None else []

    def command(self, turn: Turn) -> list[str]:
        oc = which(self.command_name)
        if not oc:
            raise BackendUnavailable(f"the OpenCode CLI ({self.command_name!r}) is not on PATH: {self.install_hint}")
        _drop_agent_config(turn.home / ".config" / "opencode")
        spec, req = turn.req.agent, turn.req
        cmd = [oc, "run", "--format", "json", "--pure", "-m", f"factory/{spec.model or self.model}"]
        if turn.resume:
            cmd += ["--session", req.session_id]
        return [*cmd, *self.extra, *spec.extra_args]  # the prompt on stdin

    def config(self, turn: Turn) -> dict[str, Any]:
        spec = turn.req.agent
        model = spec.model or self.model
        deny = read_only_agent(spec.tools)
        permission = {tool: ("deny" if deny else "allow") for tool in _WRITE_TOOLS}
        permission.update({"webfetch": "deny", "external_directory": "deny", "doom_loop": "deny"})
        return {
            "$schema": "https://opencode.ai/config.json",
            "autoupdate": False, "share": "disabled", "snapshot": False,
            "enabled_providers": ["factory"],
            "provider": {"factory": {
                "npm": "@ai-sdk/openai-compatible", "name": "Factory gateway",
                "options": {"baseURL": turn.model_url + "/v1", "apiKey": turn.stand_in},
                "models": {model: {"name": model}},
            }},
            "model": f"factory/{model}", "small_model": f"factory/{model}",
            "permission": permission,
            "instructions": [], "mcp": {}, "plugin": [],
            "agent": {"build": {"prompt": turn.system_prompt, "permission": permission}},
        }  # fmt: skip

    def environment(self, turn: Turn) -> dict[str, str]:
        return {
            "OPENCODE_CONFIG_CONTENT": json.dumps(self.config(turn)),
            "OPENCODE_DISABLE_PROJECT_CONFIG": "1", "OPENCODE_DISABLE_AUTOUPDATE": "1",
            "OPENCODE_DISABLE_LSP_DOWNLOAD": "1", "OPENCODE_DISABLE_MODELS_FETCH": "1",
            "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1", "OPENCODE_DISABLE_CLAUDE_CODE": "1",
            "XDG_CONFIG_HOME": str(turn.home / ".config"), "XDG_DATA_HOME": str(turn.home / ".local/share"),
            "XDG_CACHE_HOME": str(turn.home / ".cache"), "XDG_STATE_HOME": str(turn.home / ".local/state"),
        }  # fmt: skip

    def session_saved(self, home: Path, session_id: str) -> bool:
        if not _SESSION.fullmatch(session_id):
            return False
        data = home / ".local" / "share" / "opencode"
        return any(data.glob(f"storage/session/*/{session_id}.json")) or (data / "opencode.db").exists()

    def parser(self, session_id: str) -> OpenCodeParser:
        return OpenCodeParser(session_id)


def _drop_agent_config(config_dir: Path) -> None:
    """Remove what the agent left as OpenCode's global config (a link is removed itself, never followed)."""
    if config_dir.is_symlink() or config_dir.is_file():
        config_dir.unlink()
    elif config_dir.is_dir():
        shutil.rmtree(config_dir)
