"""Serve the dashboard with uvicorn on a thread of the emulator's own process."""

from __future__ import annotations

import threading
import time

import uvicorn

from ..backend import Backend
from .app import create_app
from .guard import served_hosts


class DashboardServer:
    def __init__(self, backend: Backend, host: str, port: int, allow_hosts: tuple[str, ...] = ()):
        app = create_app(backend, served_hosts(host, port, allow_hosts))
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="dashboard", daemon=True)
        self.host, self.port = host, port

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        # uvicorn offers no event for "listening"; its `started` flag is the signal.
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start on {self.host}:{self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
