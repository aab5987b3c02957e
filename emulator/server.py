"""Wiring: open the store, build the engine, and serve it over gRPC on one port."""

from __future__ import annotations

import errno
import functools
import logging
import socket
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

from .backend import Backend
from .service import TaskHubService
from .store import Store

log = logging.getLogger("emulator")


class PortInUse(Exception):
    """A port is taken; ``flag`` names the option that chooses another."""

    def __init__(self, message: str, flag: str = "--port"):
        super().__init__(message)
        self.flag = flag


@dataclass
class Options:
    host: str = "127.0.0.1"
    port: int = 8080
    dashboard_port: int = 8082  # 0: no dashboard
    dashboard_allow_hosts: tuple[str, ...] = ()  # Host names it serves besides loopback and `host`
    data: Path | None = Path(".emulator") / "emulator.db"
    task_hubs: tuple[str, ...] = ("default",)
    max_request_bytes: int = 16 * 1024 * 1024
    threads: int = 64


def _check_port(host: str, port: int, flag: str = "--port") -> None:
    """Fail early with a clear message; gRPC alone would only say 'bind failed'."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # Like gRPC itself, ignore connections still in TIME_WAIT; a listener still fails.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise PortInUse(f"port {port} on {host} is already in use", flag) from exc
            raise


# Calls that hold their thread for long: worker streams, and clients waiting on an instance.
_LONG_CALLS = frozenset({"GetWorkItems", "WaitForInstanceStart", "WaitForInstanceCompletion", "StreamInstanceHistory"})
# Every other call is short and takes the engine's one lock, so many threads only add thread
# switching: they get a small pool of their own. Measured on 2 cores: 64 threads cost ~15% of
# orchestrations/s, 2 cost signals/s, 4 did as well as any on both.
QUICK_THREADS = 4


class _Routed:
    """The service, with short calls routed to their own thread pool.

    Uses grpcio's per-method pool hook: a handler with an ``experimental_thread_pool``
    attribute runs there instead of in the server's pool.
    """

    def __init__(self, service: TaskHubService, pool: futures.ThreadPoolExecutor):
        self._service, self._pool = service, pool

    def __getattr__(self, name: str):
        method = getattr(self._service, name)
        if name in _LONG_CALLS or not callable(method):
            return method
        routed = functools.partial(method)
        routed.experimental_thread_pool = self._pool
        return routed


class EmulatorServer:
    """A running emulator: ``start()``, then ``stop()`` (also on SIGTERM via the CLI)."""

    def __init__(self, options: Options):
        self.options = options
        self.store = Store(options.data)
        self.backend = Backend(self.store, list(options.task_hubs))
        self._server: grpc.Server | None = None
        self._dashboard = None
        self.port: int | None = None

    def start(self) -> int:
        o = self.options
        _check_port(o.host, o.port)
        if o.dashboard_port:
            _check_port(o.host, o.dashboard_port, "--dashboard-port")
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=o.threads, thread_name_prefix="emulator-rpc"),
            options=[
                ("grpc.max_receive_message_length", o.max_request_bytes),
                ("grpc.max_send_message_length", o.max_request_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        self._quick_pool = futures.ThreadPoolExecutor(max_workers=QUICK_THREADS, thread_name_prefix="emulator-quick")
        pb_grpc.add_TaskHubSidecarServiceServicer_to_server(
            _Routed(TaskHubService(self.backend), self._quick_pool), server)
        try:
            port = server.add_insecure_port(f"{o.host}:{o.port}")
        except RuntimeError as exc:
            raise PortInUse(f"port {o.port} on {o.host} could not be bound: {exc}") from exc
        if port == 0:
            raise PortInUse(f"port {o.port} on {o.host} could not be bound")
        server.start()
        self._server, self.port = server, port
        if o.dashboard_port:
            from .dashboard.server import DashboardServer

            self._dashboard = DashboardServer(self.backend, o.host, o.dashboard_port, o.dashboard_allow_hosts)
            try:
                self._dashboard.start()
            except RuntimeError as exc:
                server.stop(None)
                raise PortInUse(str(exc), "--dashboard-port") from exc
        return port

    @property
    def dashboard_url(self) -> str | None:
        return f"http://{self.options.host}:{self.options.dashboard_port}" if self._dashboard else None

    def stop(self, grace: float = 5.0) -> None:
        """Let in-flight completions finish, end worker streams, close the database."""
        self.backend.shutdown()
        if self._dashboard is not None:
            self._dashboard.stop()
        if self._server is not None:
            self._server.stop(grace).wait()
            self._quick_pool.shutdown(wait=True)
        self.store.close()
        log.info("emulator stopped")
