"""`factory up` serves the API on a thread and loop of its own (factory.startup.on_own_loop): a busy
worker loop never holds a request up, and stopping either side stops both."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from factory.startup import on_own_loop

pytestmark = pytest.mark.fast


async def _echo_until(own_stop: asyncio.Event, sock: socket.socket) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"pong " + await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, sock=sock)
    async with server:
        await own_stop.wait()


def _ask(port: int, out: dict[str, bytes]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"ping\n")
        out["reply"] = c.recv(100)


async def test_it_answers_while_the_callers_loop_is_blocked_and_a_stop_ends_it() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    stop = asyncio.Event()
    serving = asyncio.create_task(on_own_loop(lambda own: _echo_until(own, sock), stop, "test-api"))
    await asyncio.sleep(0.2)  # the thread's server is up
    out: dict[str, bytes] = {}
    client = threading.Thread(target=_ask, args=(port, out))
    client.start()
    client.join(10)  # meanwhile this loop runs nothing at all: the worker's loop, saturated
    assert out.get("reply") == b"pong ping\n"
    stop.set()
    await asyncio.wait_for(serving, 10)


async def test_its_end_or_failure_stops_the_caller() -> None:
    stop = asyncio.Event()

    async def fails(own: asyncio.Event) -> None:
        raise RuntimeError("the API server stopped on its own")

    with pytest.raises(RuntimeError, match="stopped on its own"):
        await asyncio.wait_for(on_own_loop(fails, stop, "test-api"), 10)
    assert stop.is_set()
