"""Serve the dashboard with uvicorn on the engine's own event loop.

Its handlers then call the engine directly (no lock, no thread hop), and its list
queries go to the store's reader like the gRPC service's do.
"""

from __future__ import annotations

import asyncio
import socket

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .. import health
from ..backend import Backend
from ..workers import Registry
from .app import create_app
from .extras import HEALTH_PATH, Extras
from .guard import Guard, served_hosts

# A connection that has not sent a whole request head this long after opening is closed, and
# past this many connections a request is answered 503: slow or idle clients cannot hold the
# dashboard (nor the process's open files) for as long as they like.
HEADER_SECONDS = 10.0
MAX_CONNECTIONS = 2_000


class TimelyHeaders(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline on the first request's head (it has none of its own)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_deadline = self.loop.call_later(HEADER_SECONDS, self._head_too_slow)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not None:  # a request's head has arrived
            self._head_deadline.cancel()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_deadline.cancel()
        super().connection_lost(exc)

    def _head_too_slow(self) -> None:
        if self.cycle is None and not self.transport.is_closing():
            self.transport.close()


class DashboardServer:
    def __init__(self, backend: Backend, host: str, port: int, allow_hosts: tuple[str, ...] = (),
                 read_only: bool = False, uptime: health.Clock | None = None, workers: Registry | None = None):
        hosts = served_hosts(host, port, allow_hosts)
        inner = create_app(backend)
        inner.state.workers = workers if workers is not None else Registry(backend.clock)
        inner.state.read_only = read_only
        # One guard in front of everything: hosts, origins, bodies, read-only mode, the open health path.
        app = Guard(Extras(inner, backend, uptime, hosts), hosts, read_only=read_only,
                    open_paths=frozenset({HEALTH_PATH}) if uptime is not None else frozenset())
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off", access_log=False,
                                http=TimelyHeaders, limit_concurrency=MAX_CONNECTIONS)
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task | None = None
        self.host, self.port = host, port

    async def start(self) -> None:
        """Bind first (so a port in use fails here, as OSError), then serve in the background."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]))

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(self._task, 5.0)
        except asyncio.TimeoutError:
            self._task.cancel()
