"""Serve an ASGI app on 127.0.0.1 in a background thread, for the stand-in servers."""

from __future__ import annotations

import socket
import threading

import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BackgroundServer:
    """A real uvicorn server on its own thread and event loop.

    Usage::

        with BackgroundServer(app) as url:
            ...
    """

    def __init__(self, app, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> str:
        self.thread.start()
        ready = threading.Event()

        def _wait() -> None:
            while not self.server.started and self.thread.is_alive():
                ready.wait(0.01)

        _wait()
        if not self.server.started:
            raise RuntimeError(f"server on port {self.port} did not start")
        return self.url

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
