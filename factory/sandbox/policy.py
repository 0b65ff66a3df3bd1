"""What a sandboxed agent may reach and which environment variables it gets, from the config.

Both are allow-lists: a destination or a variable not named here is not given, whatever the host
has. The environment holds nothing of Factory's own (tokens, database, Temporal); the CLI's API
key is the one secret an agent needs, and it goes in the environment, never on a command line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from factory.config import FactoryConfig
from factory.sandbox.bwrap import PROXY_PORT
from factory.sandbox.proxy import Destination, split_host_port

ANTHROPIC_DEFAULT = "https://api.anthropic.com"

_PASS_EXACT = frozenset({"PATH", "LANG", "LANGUAGE", "TERM", "TZ", "COLORTERM", "NO_COLOR", "MAX_THINKING_TOKENS"})
# the CLI's own settings (its API endpoint and key, models, feature switches); nothing else of the host's
_PASS_PATTERN = re.compile(r"^(ANTHROPIC_|CLAUDE_CODE_|DISABLE_|LC_)[A-Z0-9_]*$")
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
    """The fixed part of every run's allow-list: the model API, git/GitHub hosts, `allowed_domains`.

    The task's own Docker environments are added per connection by the proxy (they come and go).
    """
    env = os.environ if env is None else env
    found: list[Destination | None] = [url_destination(env.get("ANTHROPIC_BASE_URL") or ANTHROPIC_DEFAULT)]
    found += [url_destination(repo.url) for repo in cfg.repos.values()]
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
    cfg: FactoryConfig, home: str, proxied: bool, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The agent's base environment: allow-listed host variables, its home, its proxy and API key.

    Args:
        cfg: the settings (the agent's API key comes from them when set).
        home: the task's CLI home (HOME; CLAUDE_CONFIG_DIR is `<home>/.claude`).
        proxied: the run has its own network namespace and reaches out through the egress proxy.
        base: the variables to pick from (the worker's environment by default).
    """
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items() if k in _PASS_EXACT or _PASS_PATTERN.match(k)}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    if cfg.anthropic_api_key:
        env["ANTHROPIC_API_KEY"] = cfg.anthropic_api_key.get_secret_value()
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
    return env
