"""The `factory` command: up, worker, api, doctor."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from factory.config import ConfigError, FactoryConfig, load_config
from factory.preflight import PortBusy, bind
from factory.processes import which
from factory.startup import (
    ChildEnded,
    Stopped,
    in_daemon_thread,
    or_fail,
    run_child,
    run_then_exit,
    then_stop,
    unless_stopped,
)

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


def _install_signals(*events: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: [e.set() for e in events])


def _fail(command: str, message: str, code: int = 1) -> NoReturn:
    """An expected failure: one line on stderr naming the command and why, and a non-zero exit code."""
    typer.secho(f"factory {command}: {message}", fg="red", err=True)
    raise typer.Exit(code)


def _bind(command: str, host: str, port: int, option: str) -> socket.socket:
    try:
        return bind(host, port, option)
    except PortBusy as exc:
        _fail(command, str(exc), 3)


# How long the API keeps an idle keep-alive connection open. Longer than its clients keep theirs (nginx's
# upstream connections 60 s, as deploy/nginx/factory.conf sets; httpx 5 s): uvicorn's own 5 s would close a
# connection just as a client that still counts it as open sends on it, and that request fails (nginx: a 502).
KEEP_ALIVE_SECONDS = 75


async def _serve_api(
    cfg: FactoryConfig, sock: socket.socket, stop: asyncio.Event, ui_port: int | None = None, **app_kwargs: object
) -> None:
    import uvicorn

    from api.main import create_app

    app = create_app(cfg, **app_kwargs)
    app.state.temporal_ui_port = ui_port  # the dashboard's Temporal links go to the UI this process started
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_keep_alive=KEEP_ALIVE_SECONDS))

    async def serve() -> None:
        try:
            await server.serve(sockets=[sock])
        except SystemExit:  # uvicorn exits the process when its start fails; here only the API ends, and says so
            pass
        # uvicorn catches SIGINT/SIGTERM itself while serving (and raises them again after): a stop all the same
        if not stop.is_set() and not server._captured_signals:
            stop.set()
            raise RuntimeError("the API server stopped on its own (its log lines above say why)")
        stop.set()

    task = asyncio.create_task(serve())
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    app.state.stopping = True  # ends open message-board streams, which would otherwise hold shutdown up
    server.should_exit = True
    await task


async def _up(
    cfg: FactoryConfig, config: Path | None, lock: Any, api_sock: socket.socket, temporal_port: int, ui_port: int
) -> None:
    from factory.store.tables import make_engine
    from temporal.client import TemporalUnavailable, wait_for_temporal
    from temporal.devserver import DevServer, DevServerFailed
    from temporal.worker import Runtime, ensure_search_attributes, run_worker

    stop = asyncio.Event()
    _install_signals(stop)
    dev: DevServer | None = None
    address = cfg.temporal.address
    host, api_port = api_sock.getsockname()[:2]
    try:
        if not address:
            dev = DevServer(cfg.data_path, port=temporal_port, ui_port=ui_port, namespace=cfg.temporal.namespace)
            dev.spawn()  # in the main thread: the server's parent-death signal is tied to the forking thread
            typer.echo(f"starting the Temporal dev server on {dev.address} (its log: {dev.data_dir / 'temporal.log'})")
            await unless_stopped((stop,), dev.ready())
            address = dev.address
            typer.echo(f"Temporal dev server on {address}, web UI on http://127.0.0.1:{ui_port}")
        # a dev server that dies after opening its port (another of its ports taken) is named at once
        client = await unless_stopped((stop,), or_fail(wait_for_temporal(cfg, address), dev.watch() if dev else None))
        await unless_stopped((stop,), ensure_search_attributes(client))
        engine = await unless_stopped((stop,), in_daemon_thread(make_engine, cfg.db_url))  # migrates
        rt = await Runtime.create(cfg, engine=engine)
        try:
            if stop.is_set():
                raise Stopped
            typer.echo(f"Factory API on http://{host}:{api_port} (data in {cfg.data_path})")

            # the API in a process of its own: neither the worker's loop nor its GIL holds a request up
            api_sock.listen(2048)  # connections wait in the backlog until the child accepts them
            argv = [sys.executable, "-m", "factory.cli", "api", "--fd", str(api_sock.fileno()),
                    "--temporal-address", address, "--data-dir", str(cfg.data_path)]  # fmt: skip
            argv += ["--config", str(config)] if config else []
            argv += ["--ui-port", str(ui_port)] if dev else []
            await asyncio.gather(
                then_stop(stop, run_worker(cfg, client, stop, rt)), run_child(argv, stop, (api_sock.fileno(),))
            )
        finally:
            await rt.close()
    except Stopped:
        pass
    except (DevServerFailed, TemporalUnavailable, FileNotFoundError, ChildEnded) as exc:  # (no `temporal` binary: FileNotFound)
        _fail("up", str(exc))
    finally:
        api_sock.close()
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
    from temporal.devserver import DataDirBusy, DataDirLock

    cfg = _load(config, data_dir=str(data_dir) if data_dir else None)
    lock = DataDirLock(cfg.data_path)
    try:
        lock.acquire()
    except DataDirBusy as exc:
        _fail("up", str(exc), 3)
    if not cfg.temporal.address:  # the dev server binds these itself: checked here, before anything is announced
        for port, option in ((temporal_port, "--temporal-port"), (ui_port, "--ui-port")):
            _bind("up", "127.0.0.1", port, option).close()
    api_sock = _bind("up", host, api_port, "--api-port")  # (an exit here drops the lock with the process)
    _warn_sandbox(cfg)
    run_then_exit(_up(cfg, config, lock, api_sock, temporal_port, ui_port))


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
        from temporal.client import TemporalUnavailable, wait_for_temporal
        from temporal.worker import ensure_search_attributes, run_worker

        stop, draining = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, stop.set)
        # systemd stops a service with SIGTERM: drain; a second SIGTERM stops at once
        loop.add_signal_handler(signal.SIGTERM, lambda: (stop if draining.is_set() else draining).set())
        try:  # before it runs anything there is nothing to drain: either signal stops the start-up
            client = await unless_stopped((stop, draining), wait_for_temporal(cfg))
            await unless_stopped((stop, draining), ensure_search_attributes(client))
        except TemporalUnavailable as exc:
            _fail("worker", str(exc))
        except Stopped:
            typer.echo("worker stopped before it started")
            return
        write_pid(pids)
        try:
            await run_worker(cfg, client, stop, memory_owner=memory_owner, drain=draining)
        finally:
            pids.unlink(missing_ok=True)

    run_then_exit(main())


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
    fd: Annotated[int | None, typer.Option(hidden=True, help="serve on this inherited socket (factory up)")] = None,
    temporal_address: Annotated[str | None, typer.Option(hidden=True)] = None,
    data_dir: Annotated[Path | None, typer.Option(hidden=True)] = None,
    ui_port: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Run only the REST API (workers run elsewhere)."""
    cfg = _load(config, data_dir=str(data_dir) if data_dir else None)
    sock = socket.socket(fileno=fd) if fd is not None else _bind("api", host, port, "--port")

    async def main() -> None:
        from temporal.client import TemporalUnavailable, wait_for_temporal

        stop = asyncio.Event()
        _install_signals(stop)
        try:
            client = await unless_stopped((stop,), wait_for_temporal(cfg, temporal_address))
        except TemporalUnavailable as exc:
            _fail("api", str(exc))
        except Stopped:
            if fd is None:
                typer.echo("api stopped before it started")
            return
        if fd is None:  # under `factory up`, which has announced it
            typer.echo(f"Factory API on http://{host}:{sock.getsockname()[1]}")
        await _serve_api(cfg, sock, stop, ui_port, client=client)

    run_then_exit(main())


@app.command()
def doctor(config: ConfigOpt = None) -> None:
    """Check what Factory needs and say how to fix what is missing."""
    cfg = _load(config)
    problems = 0

    def report(ok: bool, what: str, fix: str = "", failed: str = "MISSING") -> None:
        nonlocal problems
        typer.secho(("  ok   " if ok else f"  {failed} ") + what, fg="green" if ok else "red")
        if not ok:
            problems += 1
            if fix:
                typer.echo(f"         fix: {fix}")

    from factory import doctor as checks
    from temporal.client import address_of

    checks.check_tools(cfg, report)
    _doctor_sandbox(cfg, report)
    checks.check_keys(cfg, report)
    checks.check_database(cfg, report)
    checks.check_repos(cfg, report)
    checks.check_temporal(cfg, address_of(cfg), report)
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


def _doctor_sandbox(cfg: FactoryConfig, report: Any) -> None:
    """bwrap and socat installed, and a real sandbox that starts and whose proxy refuses a stranger."""
    from factory.sandbox import state
    from factory.sandbox.bwrap import INSTALL_HINT
    from factory.sandbox.check import self_test

    if not cfg.sandbox.enabled:
        typer.secho(f"  WARNING agent sandbox {state(cfg)}", fg="red", bold=True)
        return
    proxied = cfg.sandbox.network == "allowlist"
    report(bool(which("bwrap")), "bubblewrap (bwrap): every agent run is sandboxed", INSTALL_HINT)
    if proxied:
        report(bool(which("socat")), "socat (bridges the sandbox to the egress proxy)", INSTALL_HINT)
    if which("bwrap") and (which("socat") or not proxied):
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
