"""Wiring: open the store, build the engine, and serve it over gRPC (and the dashboard) on one event loop.

Concurrency model: one asyncio event loop, on a thread of its own ("emulator-engine"),
owns the engine. gRPC (``grpc.aio``) and the dashboard (uvicorn) run their handlers on
it; a change runs to completion between two awaits, so the engine needs no lock, and
a waiting client or a worker stream is a suspended coroutine, not a thread. Reads that
may scan (lists, searches) run on the store's reader thread. The loop is never blocked
except by the engine's own work and its SQLite commits.

Liveness: the server pings every connection (HTTP/2 keepalive); a peer that does not
answer within the liveness timeout (a frozen or vanished worker) is disconnected, its
streams end, and the work it held goes to other workers.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2_grpc

from . import health
from .backend import Backend
from .retention import DEFAULT_BATCH, DEFAULT_INTERVAL, Retention
from .service import TaskHubService
from .store import Store, oplog
from .validation import MAX_MESSAGE_BYTES
from .workers import Registry

log = logging.getLogger("dts_emulator")

# Longest wait for the engine's thread to start or to stop before giving up on it.
THREAD_TIMEOUT = 10.0


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
    max_request_bytes: int = MAX_MESSAGE_BYTES  # also the largest work item sent: what the SDK's worker receives
    liveness_timeout: float = 30.0  # a worker that does not answer pings for this long loses its work
    max_waiters: int = 10_000  # clients waiting on instances at once; more get RESOURCE_EXHAUSTED
    max_streams: int = 1_000  # worker streams at once
    entity_log: int = oplog.DEFAULT_LIMIT  # operations the log keeps per entity; 0: no log
    grace: float = 3.0  # how long a stop lets in-flight calls finish
    time_skipping: bool = False  # an idle emulator's clock jumps to the next due time (for tests)
    allow_hub_management: bool = False  # CreateTaskHub/DeleteTaskHub for hubs not named at start-up (hubs.py)
    dashboard_read_only: bool = False  # every dashboard action refused (guard.py); reads still work
    retention: float | None = None  # purge instances this many seconds after they finished (retention.py)
    retention_interval: float = DEFAULT_INTERVAL
    retention_batch: int = DEFAULT_BATCH


# Every connection is an open file. Shells commonly start processes with a soft limit of 1,024
# while the hard limit is far higher; at 1,024 a thousand idle connections left no descriptor to
# accept a worker, a client or a dashboard request with. Raising the soft limit up to the hard
# one needs no privilege; this many is enough for the connection bounds several times over.
WANTED_FILES = 65_536


def raise_file_limit(wanted: int = WANTED_FILES) -> int | None:
    """Raise the soft RLIMIT_NOFILE toward ``wanted`` within the hard limit; the soft limit after (None off POSIX).

    Once per process, before serving (the limit is the process's, not the server's).
    """
    try:
        import resource  # noqa: PLC0415 - POSIX only
    except ImportError:  # Windows: no such limit
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
            return soft
        log.debug("open-file limit raised from %d to %d", soft, target)
        return target
    return soft


class OncePerInterval(logging.Filter):
    """Let one record of each kind through per ``interval`` seconds, saying how many were held back.

    Out of descriptors, asyncio's accept loop logs a traceback for every connection it fails
    to take (hundreds of thousands a minute, measured): one line per interval tells as much.
    A record's kind is the start of its message (asyncio puts each handle's address and
    timer into its text) and, with a traceback, the exception's type.
    """

    def __init__(self, interval: float = 10.0):
        super().__init__()
        self.interval = interval
        self._last: dict[tuple, tuple[float, int]] = {}  # kind -> (when last let through, held back since)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        kind = (str(record.msg)[:48], record.exc_info[0] if record.exc_info else None)
        now = time.monotonic()
        last, held = self._last.get(kind, (float("-inf"), 0))
        if now - last < self.interval:
            self._last[kind] = (last, held + 1)
            return False
        if len(self._last) > 1_000:
            self._last.clear()  # bounded, whatever the messages
        self._last[kind] = (now, 0)
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last {now - last:.0f} s)"
        return True


_ASYNCIO_FILTER = OncePerInterval()


def quiet_repeated_asyncio_errors() -> None:
    """Install the filter on asyncio's logger (once, however many servers start)."""
    logger = logging.getLogger("asyncio")
    if _ASYNCIO_FILTER not in logger.filters:
        logger.addFilter(_ASYNCIO_FILTER)


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


# Calls gRPC may hold before the engine's loop accepts them, and for how long (a burst of this
# many StartInstance takes the loop well under this time); past either, gRPC cancels the call.
MAX_PENDING_CALLS = 50_000
PENDING_CALL_SECONDS = 300


# Connections the gRPC port accepts at once (more are closed as they come), and the seconds a new
# one has to start speaking HTTP/2. With the open-file limit raised (raise_file_limit), a thousand idle
# or slow connections leave room for workers, clients, the dashboard and the data file.
MAX_CONNECTIONS = 4_000
HANDSHAKE_SECONDS = 10


def grpc_options(o: Options) -> list[tuple[str, int]]:
    """Message limits, admission, and the keepalive pings that detect frozen workers.

    A ping goes out after half the liveness timeout without one, and a peer that has
    not answered it after the other half is disconnected: at most ``liveness_timeout``
    from the moment a worker freezes.
    """
    half_ms = max(int(o.liveness_timeout * 500), 100)
    return [
        # Up to this, the service refuses a request beyond --max-request-bytes itself, with a clear message,
        # and fails a worker's answer that large; gRPC refuses only what is larger still.
        ("grpc.max_receive_message_length", max(o.max_request_bytes * 4, 64 * 1024 * 1024)),
        ("grpc.max_send_message_length", o.max_request_bytes),
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_time_ms", half_ms),
        ("grpc.keepalive_timeout_ms", half_ms),
        # In grpcio 1.85 an unanswered ping ends the connection after the *ping* timeout
        # (keepalive_timeout_ms alone never fires; measured): both are set.
        ("grpc.http2.ping_timeout_ms", half_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # Clients may ping us as often as the SDK's defaults do.
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
        # grpc core cancels calls waiting to be accepted past 1,000 (some) and 3,000 (all), with a bare
        # CANCELLED: a burst waits its turn instead, and the service's own limits answer by name.
        ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
        ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_CALLS),
        ("grpc.server_max_unrequested_time_in_server", PENDING_CALL_SECONDS),
        # Idle or slow connections: a bounded number, and each sends its HTTP/2 preface in time or is closed.
        ("grpc.max_allowed_incoming_connections", MAX_CONNECTIONS),
        ("grpc.server_handshake_timeout_ms", HANDSHAKE_SECONDS * 1000),
    ]


class EmulatorServer:
    """A running emulator: ``start()``, then ``stop()`` (also on SIGTERM via the CLI).

    ``start`` and ``stop`` are called from any thread; the engine lives on its own loop.
    """

    def __init__(self, options: Options, store: Store | None = None):
        """``store``: one already open (tests give one whose commits fail); by default ``options.data``'s."""
        self.options = options
        self.store = store if store is not None else Store(options.data)
        self.store.entity_log = options.entity_log
        self.backend = Backend(self.store, list(options.task_hubs), max_waiters=options.max_waiters,
                                      max_streams=options.max_streams, max_message_bytes=options.max_request_bytes)
        self.port: int | None = None
        self.uptime = health.Clock()
        self.workers = Registry(self.backend.clock)  # connected and departed worker streams, for the dashboard
        self.backend.clock.skipping = options.time_skipping
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: grpc.aio.Server | None = None
        self._dashboard = None
        self._stopped: asyncio.Event | None = None
        self.retention = (Retention(self.backend, options.retention, options.retention_interval,
                                    options.retention_batch) if options.retention else None)

    @property
    def endpoint(self) -> str:
        return f"http://{self.options.host}:{self.port}"

    def start(self) -> int:
        o = self.options
        raise_file_limit()
        quiet_repeated_asyncio_errors()
        _check_port(o.host, o.port)
        if o.dashboard_port:
            _check_port(o.host, o.dashboard_port, "--dashboard-port")
        ready = threading.Event()
        outcome: list = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self.loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve(outcome, ready))
            finally:
                ready.set()
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="emulator-engine", daemon=True)
        self._thread.start()
        if not ready.wait(THREAD_TIMEOUT) or not outcome:
            raise RuntimeError("the emulator's engine did not start")
        if isinstance(outcome[0], BaseException):
            self._thread.join(THREAD_TIMEOUT)
            self.store.close()
            raise outcome[0]
        self.port = outcome[0]
        return self.port

    async def _serve(self, outcome: list, ready: threading.Event) -> None:
        """Bind, report the port (or the failure), serve until stopped, then shut down."""
        o = self.options
        self._stopped = asyncio.Event()
        self.backend.attach(asyncio.get_running_loop())
        if self.retention is not None:
            self.retention.start(asyncio.get_running_loop())
        try:
            server = grpc.aio.server(options=grpc_options(o))
            pb_grpc.add_TaskHubSidecarServiceServicer_to_server(
                TaskHubService(self.backend, hub_management=o.allow_hub_management, workers=self.workers), server)
            health_pb2_grpc.add_HealthServicer_to_server(health.HealthService(self.backend), server)
            try:
                port = server.add_insecure_port(f"{o.host}:{o.port}")
            except RuntimeError as exc:
                raise PortInUse(f"port {o.port} on {o.host} could not be bound: {exc}") from exc
            if port == 0:
                raise PortInUse(f"port {o.port} on {o.host} could not be bound")
            await server.start()
            self._server = server
            if o.dashboard_port:
                from .dashboard.server import DashboardServer

                self._dashboard = DashboardServer(self.backend, o.host, o.dashboard_port, o.dashboard_allow_hosts,
                                                  read_only=o.dashboard_read_only, workers=self.workers,
                                                  uptime=self.uptime)
                try:
                    await self._dashboard.start()
                except OSError as exc:
                    await server.stop(None)
                    raise PortInUse(f"dashboard port {o.dashboard_port} on {o.host}: {exc}",
                                    "--dashboard-port") from exc
        except BaseException as exc:
            outcome.append(exc)
            ready.set()
            return
        outcome.append(port)
        ready.set()
        await self._stopped.wait()
        await self._shutdown()

    async def _shutdown(self) -> None:
        """End worker streams and waits, let in-flight calls finish (bounded), close the store."""
        self.backend.shutdown()
        if self.retention is not None:
            self.retention.stop()
        if self._dashboard is not None:
            await self._dashboard.stop()
        if self._server is not None:
            await self._server.stop(self.options.grace)
        self.store.close()
        log.info("emulator stopped")

    @property
    def dashboard_url(self) -> str | None:
        return f"http://{self.options.host}:{self.options.dashboard_port}" if self._dashboard else None

    def stop(self) -> None:
        """Stop serving and close the database; returns within grace + a few seconds."""
        if self._thread is None or not self._thread.is_alive():
            return
        self.loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(self.options.grace + THREAD_TIMEOUT)
        if self._thread.is_alive():
            log.error("the emulator's engine did not stop in time")

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
