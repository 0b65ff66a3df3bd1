"""Agent containment: the bubblewrap sandbox around each run and the egress proxy it reaches out through.

`bwrap` builds the command line, `launch` starts it (as the sandbox uid when Factory is root, with
`seccomp`'s filter and `limits`' cgroups and rlimits), `proxy` is the per-run HTTP/CONNECT proxy
(`addresses` and `wire` are its address checks and its strict HTTP/1.1), `gateway` is the model gateway that holds the API
key and meters every run, `policy` says what a run may reach and which variables it gets. `state` and `warning` tell `factory up`, `doctor` and
`/health` how contained agents are on this host.
"""

from __future__ import annotations

from factory.config import FactoryConfig
from factory.sandbox.bwrap import INSTALL_HINT, missing_tools


def state(cfg: FactoryConfig) -> str:
    """`ok` when every agent run is sandboxed with the proxied network, else what is weaker and why."""
    if not cfg.sandbox.enabled:
        return "disabled: agents run unsandboxed and can reach all of Factory (sandbox.enabled: false)"
    missing = missing_tools(cfg.sandbox.network == "allowlist")
    if missing:
        return f"unavailable: {', '.join(missing)} not installed, agent runs fail ({INSTALL_HINT})"
    if cfg.sandbox.network == "host":
        return "host network: agents reach the host's loopback (Temporal, the API) and the internet (sandbox.network: host)"
    return "ok"


def warning(cfg: FactoryConfig) -> str | None:
    """A loud start-up warning when agents are less contained than the default, else None."""
    current = state(cfg)
    return None if current == "ok" else f"WARNING: agent sandbox {current}"
