"""How Factory's long-running processes (`factory up`, `worker`, `api`) start and end.

A start-up step waits on the network, a child process or a thread, and none of them may hold off a
Ctrl-C or SIGTERM; and once a process has stopped what it started, nothing left over (a thread
still migrating a database, a connection attempt inside the Temporal SDK's runtime) may keep it
from exiting.
"""

from __future__ import annotations

import asyncio
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


async def on_own_loop(
    main: Callable[[asyncio.Event], Coroutine[Any, Any, None]], stop: asyncio.Event, name: str
) -> None:
    """Run `main(its_stop)` on a thread with an event loop of its own until it returns; `stop` (this
    loop's) sets `its_stop`, and `main` ending, however it ends, sets `stop`.

    `factory up` serves the API this way: the worker's loop (20 agents' output, heartbeats, Temporal's
    polls) can no longer hold a request up, and the API's thread pool is its own. What `main` uses
    must be made on its loop (a Temporal client, an httpx client); the database engine is thread-safe.
    """
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()
    theirs: dict[str, Any] = {}
    started = threading.Event()

    def settle(exc: BaseException | None) -> None:
        stop.set()
        if not ended.done():
            ended.set_exception(exc) if exc is not None else ended.set_result(None)

    async def body() -> None:
        own_stop = asyncio.Event()
        theirs["loop"], theirs["stop"] = asyncio.get_running_loop(), own_stop
        started.set()
        await main(own_stop)

    def run() -> None:
        error: BaseException | None = None
        try:
            asyncio.run(body())
        except BaseException as exc:  # handed to the awaiting coroutine
            error = exc
        finally:
            started.set()
            try:
                loop.call_soon_threadsafe(settle, error)
            except RuntimeError:  # this loop is closed: nobody waits any more
                pass

    threading.Thread(target=run, name=name, daemon=True).start()
    await asyncio.to_thread(started.wait)
    waiter = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({ended, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not ended.done() and "loop" in theirs:
            try:
                theirs["loop"].call_soon_threadsafe(theirs["stop"].set)
            except RuntimeError:  # its loop has just ended
                pass
    await ended
