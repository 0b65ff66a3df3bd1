"""How Factory's long-running processes (`factory up`, `worker`, `api`) start and end.

A start-up step waits on the network, a child process or a thread, and none of them may hold off a
Ctrl-C or SIGTERM; and once a process has stopped what it started, nothing left over (a thread
still migrating a database, a connection attempt inside the Temporal SDK's runtime) may keep it
from exiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")


class Stopped(Exception):
    """A Ctrl-C or SIGTERM arrived before the process was serving."""


async def unless_stopped(stops: tuple[asyncio.Event, ...], aw: Awaitable[T]) -> T:
    """`aw`'s result, or Stopped (with `aw` cancelled) as soon as one of `stops` is set."""
    work = asyncio.ensure_future(aw)
    stopped = [asyncio.create_task(e.wait()) for e in stops]
    try:
        await asyncio.wait({work, *stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in stopped:
            t.cancel()
    if work.done():
        return work.result()
    work.cancel()
    raise Stopped


async def or_fail(aw: Awaitable[T], watch: Awaitable[Any] | None) -> T:
    """`aw`'s result, unless `watch` (a watch on a process `aw` waits for) raises first; the other is cancelled."""
    if watch is None:
        return await aw
    work, watcher = asyncio.ensure_future(aw), asyncio.ensure_future(watch)
    try:
        await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (work, watcher):
            if not t.done():
                t.cancel()
    if work.done() and not work.cancelled():
        return work.result()
    watcher.result()  # raises why the watched process ended
    raise RuntimeError("the watched process ended")


async def then_stop(stop: asyncio.Event, aw: Awaitable[None]) -> None:
    """Await `aw`, then stop the rest, however it ended (a worker that fails must not leave the API up alone)."""
    try:
        await aw
    finally:
        stop.set()


def in_daemon_thread(fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """`fn(*args)` on a daemon thread: unlike `asyncio.to_thread`, one a Ctrl-C abandons never holds the exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            future.set_result(value) if ok else future.set_exception(value)

    def run() -> None:
        try:
            result: tuple[bool, Any] = (True, fn(*args))
        except BaseException as exc:  # handed to the awaiting coroutine, which decides
            result = (False, exc)
        try:
            loop.call_soon_threadsafe(settle, *result)
        except RuntimeError:  # the loop is closed: nobody waits for this any more
            pass

    threading.Thread(target=run, name=getattr(fn, "__name__", "start-up step"), daemon=True).start()
    return future


def run_then_exit(main: Coroutine[Any, Any, None]) -> NoReturn:
    """Run a process's main coroutine to its end, then exit with its code at once.

    `main` has stopped what it started by the time it returns (its `finally` blocks did). An
    expected failure arrives as a typer/click Exit carrying its code; anything else is a bug and
    its traceback is printed. Streams and logs are flushed; leftovers are not waited for.
    """
    code = 1
    try:
        asyncio.run(main)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except KeyboardInterrupt:
        code = 130
    except BaseException as exc:
        exit_code = getattr(exc, "exit_code", None)  # click's Exit, without importing click here
        if isinstance(exit_code, int):
            code = exit_code
        else:
            traceback.print_exc()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


class ChildEnded(Exception):
    """A child process `factory up` runs ended on its own."""


async def run_child(argv: list[str], stop: asyncio.Event, pass_fds: tuple[int, ...] = (), grace: float = 10) -> None:
    """Run `argv` until `stop` is set (then SIGTERM, and SIGKILL after `grace` s); the child ending on
    its own sets `stop` and raises ChildEnded with its exit code, unless it ended because `stop` was set.

    `factory up` serves the API this way: a process of its own, so neither the worker's event loop nor
    its share of the GIL (20 agents' output, heartbeats, Temporal's polls) holds a request up. The child
    is SIGKILLed if `factory up` dies (a parent-death signal), and a Ctrl-C reaches both.
    """
    from factory.processes import die_with_parent

    proc = await asyncio.create_subprocess_exec(
        *argv, pass_fds=pass_fds, stdin=asyncio.subprocess.DEVNULL, preexec_fn=die_with_parent
    )
    ended = asyncio.create_task(proc.wait())
    waiter = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({ended, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(asyncio.shield(ended), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await ended
            except asyncio.CancelledError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()  # the die-with-parent signal would too, once this process ends
                raise
    if not stop.is_set():
        stop.set()  # a child that exits 0 was asked to stop (a Ctrl-C reaches it too)
        if proc.returncode != 0:
            raise ChildEnded(f"the API process exited (code {proc.returncode}; its lines above say why)")
