"""What a sandboxed agent may reach and which environment variables it gets, from the config.

Both are allow-lists: a destination or a variable not named here is not given, whatever the host
has. Variables are named exactly (no prefix patterns): a host variable whose name only looks like
the CLI's (`CLAUDE_CODE_LEAK`, `LC_SECRET`) never reaches an agent. The environment holds no
credential at all: the CLI's `ANTHROPIC_BASE_URL` is the model gateway and its `ANTHROPIC_API_KEY`
the run's stand-in (`factory.sandbox.gateway`); the real key stays in the worker.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from factory.config import FactoryConfig
from factory.processes import absolute_path
from factory.sandbox.bwrap import PROXY_PORT
from factory.sandbox.proxy import Destination, split_host_port

_PASS_EXACT = frozenset(
    {
        # the system's
        "PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "LC_COLLATE", "LC_NUMERIC", "LC_TIME",
        "LC_MONETARY", "TERM", "TZ", "COLORTERM", "NO_COLOR",
        # the CLI's models and limits (never its endpoint, key, headers or cloud-provider switches)
        "ANTHROPIC_MODEL", "ANTHROPIC_SMALL_FAST_MODEL", "ANTHROPIC_DEFAULT_OPUS_MODEL",
        "ANTHROPIC_DEFAULT_SONNET_MODEL", "ANTHROPIC_DEFAULT_HAIKU_MODEL", "CLAUDE_CODE_SUBAGENT_MODEL",
        "CLAUDE_CODE_MAX_OUTPUT_TOKENS", "MAX_THINKING_TOKENS", "BASH_DEFAULT_TIMEOUT_MS", "BASH_MAX_TIMEOUT_MS",
        "BASH_MAX_OUTPUT_LENGTH",
        # the CLI's switches that only turn things off
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "CLAUDE_CODE_DISABLE_TERMINAL_TITLE",
        "CLAUDE_CODE_DISABLE_AUTO_MEMORY", "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY", "DISABLE_AUTOUPDATER",
        "DISABLE_TELEMETRY", "DISABLE_ERROR_REPORTING", "DISABLE_BUG_COMMAND", "DISABLE_INSTALLATION_CHECKS",
        "DISABLE_COST_WARNINGS", "DISABLE_NON_ESSENTIAL_MODEL_CALLS", "DISABLE_PROMPT_CACHING",
    }
)  # fmt: skip
_PROXY_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def url_destination(url: str) -> Destination | None:
    """The host and port an http(s) URL connects to, or None for other schemes (file://, ssh)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return Destination(parts.hostname.lower().rstrip("."), port)


def allowed_destinations(cfg: FactoryConfig, env: Mapping[str, str] | None = None) -> list[Destination]:
    """The fixed part of every run's allow-list: git/GitHub hosts and `allowed_domains`.

    The model API is not on it: the gateway reaches it, the agent never does. The task's own Docker
    environments are added per connection by the proxy (they come and go). `env` is unused (kept
    for callers that pass it).
    """
    found: list[Destination | None] = [url_destination(repo.url) for repo in cfg.repos.values()]
    found += [url_destination(cfg.github.api_url), url_destination(cfg.github.web_url)]
    for entry in cfg.sandbox.allowed_domains:
        if re.search(r":\d+$", entry):
            host, port = split_host_port(entry)
            found.append(Destination(host, port))
        else:  # a bare name: the web's two ports
            host = entry.strip("[]").lower().rstrip(".")
            found += [Destination(host, 443), Destination(host, 80)]
    out: list[Destination] = []
    for d in found:
        if d is not None and d not in out:
            out.append(d)
    return out


def sandbox_environment(
    cfg: FactoryConfig,
    home: str,
    proxied: bool,
    base: Mapping[str, str] | None = None,
    model_url: str | None = None,
    stand_in: str | None = None,
) -> dict[str, str]:
    """The agent's base environment: allow-listed host variables, its home, its proxy and the gateway.

    Args:
        cfg: the settings.
        home: the task's CLI home (HOME; CLAUDE_CONFIG_DIR is `<home>/.claude`).
        proxied: the run has its own network namespace and reaches out through the egress proxy.
        base: the variables to pick from (the worker's environment by default).
        model_url, stand_in: the run's model gateway and its stand-in key (ANTHROPIC_BASE_URL and
            ANTHROPIC_API_KEY); never the real ones.
    """
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items() if k in _PASS_EXACT}
    env["PATH"] = absolute_path(env.get("PATH"))  # an empty or relative entry would name the checkout
    env.setdefault("LANG", "C.UTF-8")
    if model_url and stand_in:
        env["ANTHROPIC_BASE_URL"] = model_url
        env["ANTHROPIC_API_KEY"] = stand_in
    env["HOME"] = home
    env["CLAUDE_CONFIG_DIR"] = os.path.join(home, ".claude")
    if proxied:
        proxy = f"http://127.0.0.1:{PROXY_PORT}"
        # upper and lower case: curl reads only http_proxy for http://, others only the upper case
        for name in ("HTTP_PROXY", "HTTPS_PROXY"):
            env[name] = env[name.lower()] = proxy
    else:  # the host's network: keep the host's proxy settings, as before the sandbox
        for name in _PROXY_NAMES:
            for key in (name, name.lower()):
                if key in base:
                    env[key] = base[key]
        if model_url and any(k.lower() in ("http_proxy", "all_proxy") for k in env):
            # the gateway's loopback port is never behind the host's proxy
            for key in ("NO_PROXY", "no_proxy"):
                env[key] = ",".join(p for p in (env.get(key), "127.0.0.1") if p)
    return env


# settings.json keys that fetch or hold a credential (helpers the CLI runs for a key or token)
_CREDENTIAL_SETTINGS = ("apiKeyHelper", "awsAuthRefresh", "awsCredentialExport", "otelHeadersHelper")


def seed_settings(source: Path, target: Path) -> bool:
    """Copy the operator's CLI `settings.json` into a task's home, minus what could carry a credential.

    Its `env` (variables the CLI sets for itself, so its endpoint and key) keeps only the exact names
    the environment allow-list passes, and the credential helpers are dropped. False when there is
    no readable JSON object to copy (then nothing is written).
    """
    try:
        data = json.loads(source.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    for key in _CREDENTIAL_SETTINGS:
        data.pop(key, None)
    if isinstance(data.get("env"), dict):
        data["env"] = {k: v for k, v in data["env"].items() if k in _PASS_EXACT}
    else:
        data.pop("env", None)
    target.write_text(json.dumps(data, indent=2))
    return True
