"""The one line `factory doctor` prints about who may use the API."""

from __future__ import annotations

from collections.abc import Callable

from factory.config import FactoryConfig


def in_force(cfg: FactoryConfig) -> bool:
    """Whether the API asks who is calling (any sign-in configured, or FACTORY_AUTH_TOKEN set)."""
    a = cfg.auth
    return bool(cfg.factory_auth_token or a.oidc or a.github or a.local)


def auth_status(cfg: FactoryConfig) -> tuple[bool, str]:
    """(ok, line): which auth is in force; not ok when the API is open to anyone who reaches it."""
    a = cfg.auth
    ways = [name for name, on in (("OIDC", a.oidc), ("GitHub", a.github), ("local passwords", a.local)) if on]
    if cfg.factory_auth_token:
        ways.append("FACTORY_AUTH_TOKEN (bootstrap admin)")
    if not ways:
        return (
            False,
            "auth: none configured: /api is open to anyone who can reach it (set FACTORY_AUTH_TOKEN or auth.*)",
        )
    missing = []
    if a.oidc and not cfg.oidc_client_secret:
        missing.append("OIDC_CLIENT_SECRET")
    if a.github and not cfg.github_oauth_client_secret:
        missing.append("GITHUB_OAUTH_CLIENT_SECRET")
    line = f"auth: sign-in by {', '.join(ways)}; personal API tokens; new people get {a.default_role}"
    if missing:
        return False, f"{line}; missing {', '.join(missing)}"
    return True, line


def report_auth(cfg: FactoryConfig, report: Callable[..., None], warn: Callable[[str], None]) -> None:
    """Doctor's auth line: a check when some auth is in force (failed when a client secret is missing), a warning when open."""
    ok, line = auth_status(cfg)
    if not in_force(cfg):
        warn(line)
    else:
        report(ok, line, "set the missing secret in .env (docs/auth.md)")
