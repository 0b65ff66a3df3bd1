"""Repository resolution (config key, short name + default_org, owner/repo) and safe git access.

Git never sees the token in a URL or argv: an `http.extraHeader` is handed to each
git command through `GIT_CONFIG_*` environment variables, for the GitHub host only.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
from urllib.parse import urlparse

from factory.config import FactoryConfig
from factory.contracts import RepoRef
from factory.git.commands import no_repo_cwd, safe_args, safe_env

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_GITHUB_URL = re.compile(
    r"^(?:https://github\.com/|git@github\.com:|ssh://git@github\.com/)([^/]+)/([^/]+?)(?:\.git)?/?$"
)


class RepoError(ValueError):
    """The repo name or URL is unsafe, unknown or unreachable."""


def check_safe(value: str, what: str = "repo") -> None:
    if not value:
        raise RepoError(f"{what} is empty")
    if value.startswith("-"):
        raise RepoError(f"{what} {value!r} must not start with '-'")
    if ".." in value:
        raise RepoError(f"{what} {value!r} must not contain '..'")
    if any(c.isspace() for c in value) or any(ord(c) < 32 for c in value):
        raise RepoError(f"{what} {value!r} must not contain whitespace or control characters")


def _check_url(url: str, configured: bool) -> None:
    check_safe(url, "repo url")
    if url.startswith("git@") and ":" in url:
        return  # scp-like ssh
    scheme = urlparse(url).scheme
    if scheme in ("https", "ssh"):
        return
    if scheme == "file" and configured:
        return
    raise RepoError(f"repo url {url!r}: only https and ssh URLs are allowed (file:// only for repos in config.yml)")


def github_of(url: str) -> str | None:
    m = _GITHUB_URL.match(url)
    return f"{m.group(1)}/{m.group(2)}" if m else None


def resolve_repo(cfg: FactoryConfig, repo: str) -> RepoRef:
    """Resolve a repo as the seed describes: config key, short name + default_org, owner/repo."""
    repo = (repo or "").strip()
    check_safe(repo)
    if repo in cfg.repos:
        rc = cfg.repos[repo]
        _check_url(rc.url, configured=True)
        return RepoRef(
            name=repo,
            url=rc.url,
            github=rc.github or github_of(rc.url),
            configured=True,
            default_branch=rc.default_branch,
            checks=rc.checks is not None,
            checks_rounds=rc.checks.max_rounds if rc.checks else 0,
        )
    parts = repo.split("/")
    if len(parts) == 1:
        if not cfg.default_org:
            raise RepoError(f"unknown repo {repo!r}: not in config.yml and no default_org is set")
        owner, name = cfg.default_org, parts[0]
    elif len(parts) == 2:
        owner, name = parts
    else:
        raise RepoError(f"repo {repo!r}: use a config key, a short name or owner/repo")
    for p in (owner, name):
        if not _NAME.match(p):
            raise RepoError(f"repo {repo!r}: owner and name may hold only letters, digits, '-', '_' and '.'")
    web = cfg.github.web_url.rstrip("/")
    url = f"{web}/{owner}/{name.removesuffix('.git')}.git"
    _check_url(url, configured=False)
    return RepoRef(name=f"{owner}/{name}", url=url, github=f"{owner}/{name.removesuffix('.git')}")


def discoverable(cfg: FactoryConfig, repo: str) -> bool:
    """Whether an inbound event (a GitHub webhook, a Plane label) may name `repo`: a key of `repos:`, or
    a short name or owner/name inside `default_org` (owner compared case-insensitively).

    `resolve_repo` accepts any owner/name, for people holding the API token; an event comes from
    whoever can label an issue, and one GitHub App can be installed on several accounts, so an
    event never reaches a repository of another owner.
    """
    repo = (repo or "").strip()
    if repo in cfg.repos:
        return True
    parts = repo.split("/")
    if not cfg.default_org or len(parts) > 2:
        return False
    return len(parts) == 1 or parts[0].lower() == cfg.default_org.lower()


# Worker variables a network command may need: the SSH agent for ssh remotes, proxies and CA files.
_NETWORK_PASS_THROUGH = (
    "SSH_AUTH_SOCK", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy",
    "ALL_PROXY", "all_proxy", "GIT_SSL_CAINFO", "SSL_CERT_FILE", "SSL_CERT_DIR",
)  # fmt: skip


def git_env(cfg: FactoryConfig, url: str | None = None) -> dict[str, str]:
    """Environment for Factory's own network git commands (fetch, push, ls-remote).

    The minimal environment of `safe_env`, the few worker variables networking needs, and, for
    https remotes, the token as an `http.<host>.extraHeader` in `GIT_CONFIG_*` variables (never in
    a URL or on a command line).
    """
    env = safe_env({k: os.environ[k] for k in _NETWORK_PASS_THROUGH if k in os.environ})
    token = cfg.github_token.get_secret_value() if cfg.github_token else ""
    if token and (url is None or url.startswith("https://")):
        host = cfg.github.web_url.rstrip("/")
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        env["GIT_CONFIG_COUNT"] = "1"
        env["GIT_CONFIG_KEY_0"] = f"http.{host}/.extraheader"
        env["GIT_CONFIG_VALUE_0"] = f"Authorization: Basic {basic}"
    return env


def check_reachable(cfg: FactoryConfig, ref: RepoRef, timeout: float = 20) -> None:
    """`git ls-remote` an unknown repo before anything is cloned."""
    if ref.configured:
        return
    cwd, no_discovery = no_repo_cwd()  # no repository of the worker's working directory is read
    try:
        proc = subprocess.run(
            ["git", *safe_args(), "ls-remote", "--heads", "--end-of-options", ref.url],
            cwd=cwd,
            env={**git_env(cfg, ref.url), **no_discovery},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise RepoError(f"repo {ref.name!r} did not answer git ls-remote within {timeout:.0f}s") from exc
    if proc.returncode != 0:
        raise RepoError(f"repo {ref.name!r} is not reachable (git ls-remote failed)")
