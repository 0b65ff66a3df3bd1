"""The `factory` command: up, worker, api, doctor."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from factory.config import ConfigError, FactoryConfig, load_config

app = typer.Typer(help="Factory: durable orchestration of Claude Code agents.", no_args_is_help=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="config.yml (default: $FACTORY_CONFIG or ./config.yml)")]


def _load(config: Path | None, **overrides: object) -> FactoryConfig:
    logging.basicConfig(level=os.environ.get("FACTORY_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return load_config(config, **{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        typer.secho(f"invalid configuration:\n{exc}", fg="red", err=True)
        raise typer.Exit(2) from exc


def _warn_sandbox(cfg: FactoryConfig) -> None:
    """Say it loudly when agents here are less contained than the default sandbox."""
    from factory.sandbox import warning

    text = warning(cfg)
    if text:
        logging.getLogger("factory.sandbox").warning(text)
        typer.secho(f"\n{'!' * 78}\n{text}\n{'!' * 78}\n", fg="red", bold=True, err=True)


def _install_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def _serve_api(cfg: FactoryConfig, host: str, port: int, stop: asyncio.Event, **app_kwargs: object) -> None:
    import uvicorn

    from api.main import create_app

    app = create_app(cfg, **app_kwargs)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    await stop.wait()
    app.state.stopping = True  # ends open message-board streams, which would otherwise hold shutdown up
    server.should_exit = True
    await task


async def _up(cfg: FactoryConfig, host: str, api_port: int, temporal_port: int, ui_port: int) -> None:
    from temporal.client import connect
    from temporal.devserver import DataDirBusy, DataDirLock, DevServer
    from temporal.worker import Runtime, ensure_search_attributes, run_worker

    lock = DataDirLock(cfg.data_path)
    try:
        lock.acquire()
    except DataDirBusy as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(3) from exc
    stop = asyncio.Event()
    _install_signals(stop)
    dev: DevServer | None = None
    address = cfg.temporal.address
    if not address:
        dev = DevServer(cfg.data_path, port=temporal_port, ui_port=ui_port, namespace=cfg.temporal.namespace)
        dev.spawn()  # in the main thread: the server's parent-death signal is tied to the forking thread
        await asyncio.to_thread(dev.wait_ready)
        address = dev.address
        typer.echo(f"Temporal dev server on {address}, web UI on http://127.0.0.1:{ui_port}")
    try:
        client = await connect(cfg, address)
        await ensure_search_attributes(client)
        rt = await Runtime.create(cfg)
        try:
            typer.echo(f"Factory API on http://{host}:{api_port} (data in {cfg.data_path})")
            await asyncio.gather(
                run_worker(cfg, client, stop, rt),
                _serve_api(cfg, host, api_port, stop, client=client, engine=rt.engine, memory=rt.memory, board=rt.board),
            )
        finally:
            await rt.close()
    finally:
        if dev is not None:
            await asyncio.to_thread(dev.stop)
        lock.release()
    typer.echo("Factory stopped.")


@app.command()
def up(
    config: ConfigOpt = None,
    data_dir: Annotated[Path | None, typer.Option(help="where the database, Temporal state and logs live")] = None,
    host: Annotated[str, typer.Option(help="API bind address")] = "127.0.0.1",
    api_port: Annotated[int, typer.Option()] = 8100,
    temporal_port: Annotated[int, typer.Option()] = 7233,
    ui_port: Annotated[int, typer.Option()] = 8233,
) -> None:
    """Run everything: the Temporal dev server (unless temporal.address is set), a worker and the API."""
    cfg = _load(config, data_dir=str(data_dir) if data_dir else None)
    _warn_sandbox(cfg)
    asyncio.run(_up(cfg, host, api_port, temporal_port, ui_port))


@app.command()
def worker(
    config: ConfigOpt = None,
    memory_owner: Annotated[
        bool, typer.Option("--memory-owner", help="open the embedded memory store here and serve it to the others")
    ] = False,
    drain: Annotated[
        bool, typer.Option("--drain", help="tell this config's running worker to drain, and wait until it exits")
    ] = False,
) -> None:
    """Run a worker against temporal.address (several hosts can each run one).

    SIGTERM (or `factory worker --drain`) drains it: no new tasks or agent runs, the running ones
    finish (bounded by workers.drain_timeout_seconds), then it exits. SIGINT stops it at once.
    """
    from temporal.drain import pid_file, write_pid
    from temporal.worker import queues

    cfg = _load(config)
    pids = pid_file(cfg, queues(cfg)[0])
    if drain:
        raise typer.Exit(_ask_to_drain(pids))
    _warn_sandbox(cfg)

    async def main() -> None:
        from temporal.client import connect
        from temporal.worker import ensure_search_attributes, run_worker

        stop, draining = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, stop.set)
        # systemd stops a service with SIGTERM: drain; a second SIGTERM stops at once
        loop.add_signal_handler(signal.SIGTERM, lambda: (stop if draining.is_set() else draining).set())
        client = await connect(cfg)
        await ensure_search_attributes(client)
        write_pid(pids)
        try:
            await run_worker(cfg, client, stop, memory_owner=memory_owner, drain=draining)
        finally:
            pids.unlink(missing_ok=True)

    asyncio.run(main())


def _ask_to_drain(pids: Path) -> int:
    """SIGTERM the worker whose pid file this is and wait for it to exit; the exit code of this command."""
    try:
        pid = int(pids.read_text().strip())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        typer.secho(f"no running worker found ({pids})", fg="red", err=True)
        return 1
    typer.echo(f"worker {pid} is draining: no new runs; waiting for its running ones to end")
    while _running(pid):
        time.sleep(0.5)
    typer.echo(f"worker {pid} drained and exited")
    return 0


def _running(pid: int) -> bool:
    try:  # an exited process its parent has not reaped yet (a zombie) counts as exited
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(") ")[2][:1] != "Z"
    except OSError:
        return False


@app.command()
def api(
    config: ConfigOpt = None,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8100,
) -> None:
    """Run only the REST API (workers run elsewhere)."""
    cfg = _load(config)

    async def main() -> None:
        stop = asyncio.Event()
        _install_signals(stop)
        await _serve_api(cfg, host, port, stop)

    asyncio.run(main())


@app.command()
def doctor(config: ConfigOpt = None) -> None:
    """Check what Factory needs and say how to fix what is missing."""
    cfg = _load(config)
    problems = 0

    def report(ok: bool, what: str, fix: str = "") -> None:
        nonlocal problems
        typer.secho(("  ok   " if ok else "  MISSING ") + what, fg="green" if ok else "red")
        if not ok:
            problems += 1
            if fix:
                typer.echo(f"         fix: {fix}")

    claude = shutil.which(cfg.claude_command)
    version = ""
    if claude:
        try:
            version = subprocess.run([claude, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            version = "(did not answer --version)"
    report(bool(claude), f"Claude Code CLI: {claude or cfg.claude_command} {version}", "npm install -g @anthropic-ai/claude-code, or set claude_command")
    report(bool(shutil.which("git")), "git", "install git")
    _doctor_sandbox(cfg, report)
    has_key = bool(cfg.anthropic_api_key or os.environ.get("ANTHROPIC_API_KEY"))
    report(has_key, "ANTHROPIC_API_KEY", "put ANTHROPIC_API_KEY=... in .env or the environment")
    report(bool(cfg.github_token), "GITHUB_TOKEN (push and pull requests)", "put GITHUB_TOKEN=... in .env")
    try:
        from factory.store.tables import make_engine

        make_engine(cfg.db_url).dispose()
        report(True, f"database {cfg.db_url.split('://')[0]}")
    except Exception as exc:
        report(False, f"database: {exc}", "check database_url")
    _doctor_repos(cfg, report)
    from temporal.client import address_of

    address = address_of(cfg)
    host, _, port = address.rpartition(":")
    try:  # a plain TCP check: the SDK's runtime is not worth starting (and tearing down) for this
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
        ok = True
    except (OSError, ValueError):
        ok = False
    report(ok, f"Temporal at {address}", "run `factory up` (starts a dev server) or set temporal.address")
    in_force = cfg.secrets_in_force()
    typer.echo("  secrets in force (an empty variable counts as unset):")
    typer.echo("         " + ", ".join(f"{name} {'set' if on else 'unset'}" for name, on in in_force.items()))
    if not in_force["FACTORY_AUTH_TOKEN"]:
        typer.secho("  note FACTORY_AUTH_TOKEN is not set: /api is open to anyone who can reach it", fg="yellow")
    else:
        typer.echo("  note FACTORY_AUTH_TOKEN is set: every /api request needs Authorization: Bearer <token>")
    if problems:
        typer.secho(f"{problems} problem(s) found", fg="red")
        raise typer.Exit(1)
    typer.secho("all good", fg="green")


db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None) -> None:
    """Apply the schema migrations to database_url (once, under a lock; every process also does it at start)."""
    from sqlalchemy import create_engine

    from factory.store import schema

    cfg = _load(config)
    url = schema.sqlalchemy_url(cfg.db_url)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    try:
        before = schema.current_revision(engine)
        schema.upgrade(engine)
        after = schema.current_revision(engine)
    finally:
        engine.dispose()
    typer.echo(f"database at {after}" + (f" (was {before or 'empty'})" if before != after else " (already current)"))


def _doctor_repos(cfg: FactoryConfig, report: Any) -> None:
    """Each configured repo, and whether `git ls-remote` reaches it with Factory's credentials."""
    from dataclasses import replace

    from factory.git.repos import RepoError, check_reachable, resolve_repo

    if not cfg.repos:
        typer.secho("  note no repos configured: add one under `repos:` in config.yml (see the README's quickstart)", fg="yellow")
    for name in sorted(cfg.repos):
        try:
            # check_reachable skips configured repos (tasks trust config.yml); here they are what is checked
            check_reachable(cfg, replace(resolve_repo(cfg, name), configured=False))
            report(True, f"repo {name} reachable")
        except RepoError as exc:
            report(False, f"repo {name}: {exc}", f"check repos.{name}.url and GITHUB_TOKEN")


def _doctor_sandbox(cfg: FactoryConfig, report: Any) -> None:
    """bwrap and socat installed, and a real sandbox that starts and whose proxy refuses a stranger."""
    from factory.sandbox import state
    from factory.sandbox.bwrap import INSTALL_HINT
    from factory.sandbox.check import self_test

    if not cfg.sandbox.enabled:
        typer.secho(f"  WARNING agent sandbox {state(cfg)}", fg="red", bold=True)
        return
    proxied = cfg.sandbox.network == "allowlist"
    report(bool(shutil.which("bwrap")), "bubblewrap (bwrap): every agent run is sandboxed", INSTALL_HINT)
    if proxied:
        report(bool(shutil.which("socat")), "socat (bridges the sandbox to the egress proxy)", INSTALL_HINT)
    if shutil.which("bwrap") and (shutil.which("socat") or not proxied):
        facts: list[str] = []
        problem = asyncio.run(self_test(proxied, sandbox=cfg.sandbox, facts=facts))
        what = "a sandbox starts" + (" and the egress proxy refuses hosts off the allow-list" if proxied else "")
        report(problem is None, what if problem is None else f"{what}: {problem}", "see docs/sandbox.md")
        for fact in facts:  # what holds inside: uid, capabilities, seccomp, each limit and how
            typer.echo(f"    sandbox: {fact}")
    if not proxied:
        typer.secho(f"  WARNING agent sandbox {state(cfg)}", fg="red", bold=True)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
