"""Claude Code (`claude -p --output-format stream-json`): the default backend, as Factory always ran it."""

from __future__ import annotations

from pathlib import Path

from factory.backends import Turn
from factory.config import FactoryConfig
from factory.domain.streamjson import ParsedLine, parse_line
from factory.processes import which


class _StreamJson:
    def parse(self, line: str) -> ParsedLine:
        return parse_line(line)


class BackendUnavailable(Exception):
    """The backend's CLI is not installed (the activity turns this into a non-retryable failure)."""


class ClaudeBackend:
    name = "claude"
    api = "anthropic"
    needs_read_only_checkout = False  # `--tools` removes the tools a type may not have
    install_hint = "npm install -g @anthropic-ai/claude-code, or set claude_command"

    def __init__(self, cfg: FactoryConfig) -> None:
        own = cfg.backends.get("claude")
        self.command_name = own.command if own is not None and own.command else cfg.claude_command
        self.model = own.model if own is not None else None
        self.extra = list(own.extra_args) if own is not None else []

    def command(self, turn: Turn) -> list[str]:
        claude = which(self.command_name)
        if not claude:
            raise BackendUnavailable(
                f"the Claude Code CLI ({self.command_name!r}) is not on PATH: install it with "
                "`npm install -g @anthropic-ai/claude-code` or set claude_command in config.yml"
            )
        spec, req = turn.req.agent, turn.req
        tools = ",".join(spec.tools)
        cmd = [claude, "-p", "--output-format", "stream-json", "--verbose"]
        cmd += ["--append-system-prompt", turn.system_prompt]
        cmd += ["--tools", tools]
        if spec.tools:
            cmd += ["--allowedTools", tools]
        cmd += ["--resume", req.session_id] if turn.resume else ["--session-id", req.session_id]
        model = spec.model or self.model
        if model:
            cmd += ["--model", model]
        if spec.max_turns:
            cmd += ["--max-turns", str(spec.max_turns)]
        if turn.budget_usd is not None:  # the CLI stops itself once a request takes it past this
            cmd += ["--max-budget-usd", f"{turn.budget_usd:.6f}"]
        cmd += turn.claude_settings  # settings from Factory alone: no hook or MCP server of the agent's
        cmd += self.extra + list(spec.extra_args)
        return cmd

    def environment(self, turn: Turn) -> dict[str, str]:
        return {}  # ANTHROPIC_BASE_URL/API_KEY (the gateway, the stand-in) are the sandbox's base

    def session_saved(self, home: Path, session_id: str) -> bool:
        """Whether the CLI has saved this session (`<home>/.claude/projects/<cwd>/<id>.jsonl`)."""
        return any((home / ".claude" / "projects").glob(f"*/{session_id}.jsonl"))

    def parser(self, session_id: str) -> _StreamJson:
        return _StreamJson()
