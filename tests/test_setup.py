"""Start-up and configuration: clear errors, doctor, and a task that fails at once when the CLI or key is missing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from factory.config import ConfigError, load_config
from tests.procs import ROOT


def _write(tmp_path, text):
    p = tmp_path / "config.yml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("max_concurrent_agents: 0\n", "max_concurrent_agents"),
        ("agent_timeout_minutes: soon\n", "agent_timeout_minutes"),
        ("bogus_key: 1\n", "bogus_key: unknown key"),
        ("agent_templates:\n  coder:\n    system_prompt_file: prompts/coder.md\n    allowed_tools: [Read, Teleport]\n", "agent_templates.coder.allowed_tools: unknown tool 'Teleport'"),
        ("agent_templates:\n  wizard:\n    system_prompt_file: prompts/coder.md\n", "agent_templates.wizard: unknown agent type"),
        ("agent_templates:\n  coder:\n    system_prompt_file: prompts/nope.md\n", "agent_templates.coder.system_prompt_file: no such file"),
        ("repos:\n  app:\n    url: https://github.com/a/b.git\n    default_agent: poet\n", "repos.app.default_agent"),
        ("github_token: abc\n", "secrets belong in the environment"),
        ("- just\n- a list\n", "top level must be a mapping"),
    ],
)
def test_invalid_config_names_the_key_and_the_file(tmp_path, text, fragment):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert fragment in str(err.value)
    assert str(path) in str(err.value)


def test_fractional_timeouts_and_defaults(tmp_path):
    cfg = load_config(_write(tmp_path, "agent_activity_timeout_minutes: 0.15\n"))
    assert cfg.agent_activity_timeout_minutes * 60 == pytest.approx(9)
    assert cfg.claude_command == "claude" and cfg.max_concurrent_agents == 3
    assert cfg.github.api_url == "https://api.github.com"
    assert cfg.db_url == f"sqlite:///{tmp_path / 'data' / 'factory.db'}"
    assert set(cfg.agent_templates) == {"coder", "coder_revision", "reviewer", "researcher", "devops"}


def test_the_shipped_config_is_valid():
    cfg = load_config(ROOT / "config.yml")
    assert "code_review" in cfg.workflows
    assert cfg.agent_templates["reviewer"].allowed_tools == ["Read", "Glob", "Grep"]


def test_factory_up_refuses_an_invalid_config(tmp_path):
    path = _write(tmp_path, "max_concurrent_agents: -1\n")
    r = subprocess.run([sys.executable, "-m", "factory.cli", "up", "--config", str(path)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2
    assert "max_concurrent_agents" in r.stderr and str(path) in r.stderr


def test_doctor_says_what_is_missing(tmp_path):
    path = _write(tmp_path, "claude_command: claude-not-installed\ntemporal:\n  address: 127.0.0.1:1\n")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("ANTHROPIC_API_KEY", "GITHUB_TOKEN")}
    r = subprocess.run([sys.executable, "-m", "factory.cli", "doctor", "--config", str(path)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert r.returncode == 1
    out = r.stdout
    assert "MISSING Claude Code CLI" in out and "npm install -g @anthropic-ai/claude-code" in out
    assert "MISSING ANTHROPIC_API_KEY" in out and "MISSING GITHUB_TOKEN" in out
    assert "MISSING Temporal at 127.0.0.1:1" in out
    assert "ok   git" in out and "ok   database" in out
    assert "GITHUB_TOKEN unset" in out and "FACTORY_AUTH_TOKEN is not set" in out


def test_doctor_takes_an_empty_token_for_unset(tmp_path):
    path = _write(tmp_path, "temporal:\n  address: 127.0.0.1:1\n")
    (tmp_path / ".env").write_text("FACTORY_AUTH_TOKEN=\nGITHUB_TOKEN=ghp-set-in-dotenv\n")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("FACTORY_AUTH_TOKEN", "GITHUB_TOKEN")}
    env["FACTORY_AUTH_TOKEN"] = ""
    r = subprocess.run([sys.executable, "-m", "factory.cli", "doctor", "--config", str(path)], capture_output=True, text=True, cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert "FACTORY_AUTH_TOKEN unset" in r.stdout and "GITHUB_TOKEN set" in r.stdout, r.stdout + r.stderr
    assert "FACTORY_AUTH_TOKEN is not set: /api is open" in r.stdout
    env["FACTORY_AUTH_TOKEN"] = "a-real-token"
    r = subprocess.run([sys.executable, "-m", "factory.cli", "doctor", "--config", str(path)], capture_output=True, text=True, cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert "FACTORY_AUTH_TOKEN set" in r.stdout and "needs Authorization: Bearer" in r.stdout


async def test_task_fails_at_once_without_the_cli(start_factory):
    async with start_factory(claude_command="claude-not-installed") as h:
        t = await h.create("No CLI", "none")
        failed = await h.wait_for(t["id"], {"failed", "done"}, timeout=60)
        assert failed["status"] == "failed"
        assert "claude-not-installed" in failed["error"] and "not on PATH" in failed["error"]


async def test_task_fails_at_once_without_an_api_key(start_factory, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    async with start_factory() as h:
        t = await h.create("No key", "none")
        failed = await h.wait_for(t["id"], {"failed", "done"}, timeout=60)
        assert failed["status"] == "failed" and "ANTHROPIC_API_KEY is not set" in failed["error"]
