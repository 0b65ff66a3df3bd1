"""The agent-backend port: how one turn of one coding CLI runs, whichever CLI it is.

A backend says how to start a turn (command line, environment, how the prompt goes in: always
stdin), how its event stream maps onto Factory's events (`ParsedLine`: log entries, assistant texts,
the session id, the end and its status), how a session resumes, where it keeps its sessions in the
task's CLI home, and how tools are limited for an agent type. Everything else — the sandbox, the
model gateway and its budget, the watchdog, the ledger, questions and the board — is Factory's and
the same for every backend (activities/agent.py).

What a backend trusts: nothing on its stdout is a figure or a path. Cost and tokens come from the
gateway's meter; the result it builds only says whether the turn ended and how.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from factory.config import FactoryConfig
from factory.contracts import AgentRequest
from factory.domain.streamjson import ParsedLine
from factory.processes import which

SESSION_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{7,127}")
"""What a session id of any backend looks like (a UUID, `ses_…`). Factory takes none of another shape from a
CLI's output, which the agent can write: the id goes on the next run's command line (`--resume <id>`) and is
what a crashed run's leftovers are found by."""

DEFAULT_BACKEND = "claude"


@dataclass
class Turn:
    """What Factory gives a backend to build one turn's command line and environment."""

    req: AgentRequest
    resume: bool
    budget_usd: float | None  # the run's cap; the gateway enforces it for every backend
    system_prompt: str
    home: Path  # the task's CLI home (HOME), writable by the agent, kept between runs
    model_url: str  # the gateway's base URL as the run sees it (no /v1)
    stand_in: str  # the run's stand-in key; never the real one
    claude_settings: list[str] = field(default_factory=list)  # Factory's own settings flags (claude only)


class Parser(Protocol):
    def parse(self, line: str) -> ParsedLine: ...


class AgentBackend(Protocol):
    name: str
    # a reviewer's checkout is bound read-only when the backend cannot take a per-tool list
    needs_read_only_checkout: bool
    # the gateway routes this backend's model API ("anthropic" or "openai")
    api: str

    def command(self, turn: Turn) -> list[str]: ...

    def environment(self, turn: Turn) -> dict[str, str]: ...

    def session_saved(self, home: Path, session_id: str) -> bool: ...

    def parser(self, session_id: str) -> Parser: ...


def read_only_agent(tools: list[str]) -> bool:
    """An agent type that must not write: its template names no tool that edits or runs commands."""
    return not any(t.split("(", 1)[0] in ("Edit", "Write", "Bash", "MultiEdit", "NotebookEdit") for t in tools)


def backend_for(cfg: FactoryConfig, name: str | None) -> AgentBackend:
    """The backend an agent spec names (`claude` by default), configured from `backends:`."""
    from factory.backends.claude import ClaudeBackend
    from factory.backends.codex import CodexBackend
    from factory.backends.opencode import OpenCodeBackend

    makers: dict[str, Callable[[FactoryConfig], AgentBackend]] = {
        "claude": ClaudeBackend, "codex": CodexBackend, "opencode": OpenCodeBackend,
    }  # fmt: skip
    key = name or DEFAULT_BACKEND
    if key not in makers:
        raise ValueError(f"unknown agent backend {key!r} (known: {', '.join(makers)})")
    return makers[key](cfg)


def check_backends(cfg: FactoryConfig) -> list[tuple[bool, str, str]]:
    """`factory doctor`'s line per backend besides Claude Code (configured or named by a template): installed, version."""
    out = []
    names = ({*cfg.backends} | {t.backend for t in cfg.agent_templates.values()}) - {DEFAULT_BACKEND}
    for name in sorted(names):
        b = backend_for(cfg, name)
        command = getattr(b, "command_name", name)
        path = which(command)
        version = ""
        if path:
            try:
                version = (
                    subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20)
                    .stdout.strip()
                    .splitlines()[0]
                )
            except (OSError, subprocess.SubprocessError, IndexError):
                version = "(version unknown)"
        out.append(
            (bool(path), f"agent backend {name}: {path or command} {version}".strip(), getattr(b, "install_hint", ""))
        )
    return out
