"""What `factory doctor` checks beyond installed programs: the database, the keys, Temporal, the repos.

Doctor runs before `factory up` (the README's order), so it changes nothing: no database file is
created, no directory made, no migration run. A key is tested by one short read-only call to its
own service; what is printed names the key and the verdict, never the key.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import typer

from factory.auth.status import report_auth
from factory.backends import check_backends
from factory.config import FactoryConfig
from factory.preflight import KeyCheck, check_github_token, check_model_key
from factory.processes import which

Report = Callable[..., None]  # report(ok, what, fix="", failed="MISSING")


def note(text: str) -> None:
    typer.secho(f"  note {text}", fg="yellow")


def check_tools(cfg: FactoryConfig, report: Report) -> None:
    """The Claude Code CLI (and its version) and git."""
    claude = which(cfg.claude_command)
    version = ""
    if claude:
        try:
            version = subprocess.run([claude, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            version = "(did not answer --version)"
    report(bool(claude), f"Claude Code CLI: {claude or cfg.claude_command} {version}",
           "npm install -g @anthropic-ai/claude-code, or set claude_command")  # fmt: skip
    report(bool(which("git")), "git", "install git")
    for ok, what, fix in check_backends(cfg):  # Codex, OpenCode: the ones config.yml uses
        report(ok, what, fix)


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_database(cfg: FactoryConfig, report: Report) -> None:
    """SQLite: the file opened read-only if it exists, else where it will be created is writable. Others: SELECT 1."""
    from factory.store import schema

    url = schema.sqlalchemy_url(cfg.db_url)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            where = _existing_ancestor(path.parent)
            writable = os.access(where, os.W_OK)
            report(writable, f"database sqlite: {path} not created yet (the first start creates it)"
                   if writable else f"database sqlite: {where} is not writable", "check data_dir or database_url")  # fmt: skip
            return
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            report(True, f"database sqlite ({path})")
        except sqlite3.Error as exc:
            report(False, f"database sqlite ({path}): {exc}", "check data_dir or database_url")
        return
    from sqlalchemy import create_engine, text

    engine = create_engine(url, connect_args={"connect_timeout": 5} if url.startswith("postgresql") else {})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        report(True, f"database {url.split('://')[0]}")
    except Exception as exc:  # any driver's error: the message is the diagnosis (the URL's password is not in it)
        report(False, f"database {url.split('://')[0]}: {type(exc).__name__}", "check database_url")
    finally:
        engine.dispose()


def _key(report: Report, name: str, result: KeyCheck, fix: str) -> None:
    if result.verdict == "unchecked":
        note(f"{name} is set; {result.detail}")
    else:
        report(result.verdict == "ok", f"{name} {result.detail}", fix, failed="REJECTED")


def check_keys(cfg: FactoryConfig, report: Report) -> None:
    """The model key and the GitHub token: present, and accepted by their services."""
    from factory.sandbox.gateway import ModelGateway

    gateway = ModelGateway.from_config(cfg)
    if not gateway.has_credential:
        report(False, "ANTHROPIC_API_KEY", "put ANTHROPIC_API_KEY=... in .env or the environment")
    else:
        _key(report, "ANTHROPIC_API_KEY", check_model_key(gateway.upstream, gateway.api_key, gateway.auth_token),
             "the model API refused the key: put a valid ANTHROPIC_API_KEY in .env")  # fmt: skip
    if not cfg.github_token:
        report(False, "GITHUB_TOKEN (push and pull requests)", "put GITHUB_TOKEN=... in .env")
    else:
        _key(report, "GITHUB_TOKEN", check_github_token(cfg.github.api_url, cfg.github_token.get_secret_value()),
             "GitHub refused the token: put a valid GITHUB_TOKEN in .env")  # fmt: skip
    report_auth(cfg, report, note)  # which auth is in force; a warning when /api is open


def check_temporal(cfg: FactoryConfig, address: str, report: Report) -> None:
    """A plain TCP check (the SDK's runtime is not worth starting for it). Not running before `factory up` is normal."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
        report(True, f"Temporal at {address}")
    except (OSError, ValueError):
        if cfg.temporal.address:  # a cluster of its own: it should be up before Factory is
            report(False, f"Temporal at {address}", "start the cluster, or check temporal.address")
        else:
            note(f"Temporal at {address}: not running yet (factory up starts it)")


def check_repos(cfg: FactoryConfig, report: Report) -> None:
    """Each configured repo, and whether `git ls-remote` reaches it with Factory's credentials."""
    from factory.git.repos import RepoError, check_reachable, resolve_repo

    if not cfg.repos:
        note("no repos configured: add one under `repos:` in config.yml (see the README's quickstart)")
    for name in sorted(cfg.repos):
        try:
            # check_reachable skips configured repos (tasks trust config.yml); here they are what is checked
            check_reachable(cfg, replace(resolve_repo(cfg, name), configured=False))
            report(True, f"repo {name} reachable")
        except RepoError as exc:
            report(False, f"repo {name}: {exc}", f"check repos.{name}.url and GITHUB_TOKEN")
