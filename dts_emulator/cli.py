"""``python -m dts_emulator``: flags, start-up banner, and a clean stop on SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from . import health
from .dashboard.guard import check_host_name
from .retention import parse_duration
from .server import EmulatorServer, Options, PortInUse
from .store import DataFileError, DataInUse, SchemaError
from .store.oplog import DEFAULT_LIMIT
from .validation import MAX_MESSAGE_BYTES, MIN_MESSAGE_BYTES

log = logging.getLogger("dts_emulator.cli")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _hubs(text: str) -> tuple[str, ...]:
    hubs = tuple(h.strip() for h in text.split(",") if h.strip())
    if not hubs:
        raise argparse.ArgumentTypeError("at least one task hub name is needed")
    return hubs


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 3600 seconds")
    return value


def _message_bytes(text: str) -> int:
    """A message limit: below 64 KiB, ordinary work items (IDs, events, the envelope) would not fit."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of bytes") from None
    if value < MIN_MESSAGE_BYTES:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_MESSAGE_BYTES} bytes (64 KiB)")
    return value


def _kept_operations(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number of operations") from None
    if not 0 <= value <= 100_000:
        raise argparse.ArgumentTypeError("must be between 0 (no log) and 100000 operations")
    return value


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _allowed_hosts(text: str) -> list[str]:
    try:
        return [check_host_name(name) for name in text.split(",") if name.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: list[str] | None = None, prog: str = "python -m dts_emulator") -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=prog,
        description="A Docker-free, persistent Durable Task Scheduler emulator (gRPC, plain text).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8080, help="gRPC port (default: 8080; 0 picks a free port)")
    p.add_argument("--dashboard-port", type=int, default=8082,
                   help="web dashboard port (default: 8082; 0 turns the dashboard off)")
    p.add_argument("--dashboard-allow-host", type=_allowed_hosts, action="extend", default=[], metavar="NAME",
                   help="a Host name (NAME or NAME:PORT) the dashboard also serves, for a proxy in front of it; "
                        "repeatable or comma-separated (default: loopback names and --host only)")
    p.add_argument("--dashboard-read-only", action="store_true",
                   help="the dashboard shows everything but refuses every action (to show it to others)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--data", type=Path, default=Path(".emulator") / "emulator.db",
                       help="SQLite file that keeps all state (default: .emulator/emulator.db)")
    where.add_argument("--in-memory", action="store_true", help="keep state in memory only; gone at exit")
    p.add_argument("--task-hubs", type=_hubs, default=os.environ.get("DTS_TASK_HUB_NAMES") or "default",
                   help="comma-separated task hub names (default: env DTS_TASK_HUB_NAMES, else 'default')")
    p.add_argument("--max-request-bytes", type=_message_bytes, default=MAX_MESSAGE_BYTES, metavar="BYTES",
                   help="largest gRPC message accepted, and largest work item sent; workers must receive "
                        "this much (default: 4 MiB, what the SDK's worker receives)")
    p.add_argument("--liveness-timeout", type=_positive, default=30.0, metavar="SECONDS",
                   help="a worker that does not answer the emulator's pings for this long is disconnected and "
                        "its work goes to other workers (default: 30)")
    p.add_argument("--max-waiters", type=int, default=10_000, metavar="N",
                   help="clients waiting on instances at once; more get RESOURCE_EXHAUSTED (default: 10000)")
    p.add_argument("--entity-log", type=_kept_operations, default=DEFAULT_LIMIT, metavar="N",
                   help="operations the log keeps per entity (what each did, who sent it, the state after; "
                        f"see the dashboard's entity page); 0 turns the log off (default: {DEFAULT_LIMIT})")
    p.add_argument("--time-skipping", action="store_true",
                   help="for tests: whenever no work item is running or ready, the clock jumps to the next timer, "
                        "delayed message or scheduled start (default: off, the wall clock)")
    p.add_argument("--allow-hub-management", action="store_true",
                   help="let clients create task hubs not named at start-up (CreateTaskHub) and delete them "
                        "(default: off; like the official emulator, other hub names get NOT_FOUND)")
    p.add_argument("--retention", type=_duration, default=None, metavar="DURATION",
                   help="purge instances this long after they finished, e.g. 90s, 15m, 12h, 7d "
                        "(default: off, kept until purged)")
    p.add_argument("--check", metavar="ENDPOINT", nargs="?", const="http://localhost:8080",
                   help="do not serve: ask the emulator at ENDPOINT (default http://localhost:8080) whether it is "
                        "healthy (gRPC health service); exit 0 if it is, 1 if not")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                   help="log level for the emulator's own logs (default: warning)")
    return p.parse_args(argv)


class StopSignals:
    """SIGINT and SIGTERM, caught from ``with`` on; ``wait()`` sleeps until one arrives and returns it.

    Not ``Event.wait`` with handlers that set the event: the kernel may hand a process's
    signal to any thread, and when it picks one of the engine's or gRPC's, the main
    thread sleeps on in its lock and never runs the handler (seen: about one SIGTERM in
    30 ignored until SIGKILL). The wake-up fd is written by whichever thread gets the
    signal, so the main thread wakes, and Python runs the handler there.
    """

    def __enter__(self) -> StopSignals:
        self.received: list[int] = []
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._previous = {sig: signal.signal(sig, lambda number, _: self.received.append(number))
                          for sig in STOP_SIGNALS}
        return self

    def wait(self) -> int:
        while not self.received:
            self._reader.recv(64)  # a byte per signal; the handler runs as soon as this returns
        return self.received[0]

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._previous_fd)
        self._reader.close()
        self._writer.close()


def wait_for_stop_signal() -> int:
    """Sleep until SIGINT or SIGTERM arrives, and return it."""
    with StopSignals() as signals:
        return signals.wait()


def main(argv: list[str] | None = None, prog: str = "python -m dts_emulator") -> int:
    args = parse_args(argv, prog)
    if args.check:
        healthy, message = health.check(args.check)
        print(message)  # the user-facing answer of a command
        return 0 if healthy else 1
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    options = Options(host=args.host, port=args.port, dashboard_port=args.dashboard_port,
                      dashboard_allow_hosts=tuple(args.dashboard_allow_host),
                      data=None if args.in_memory else args.data,
                      task_hubs=args.task_hubs, max_request_bytes=args.max_request_bytes,
                      liveness_timeout=args.liveness_timeout, max_waiters=args.max_waiters,
                      time_skipping=args.time_skipping, allow_hub_management=args.allow_hub_management,
                      retention=args.retention, dashboard_read_only=args.dashboard_read_only,
                      entity_log=args.entity_log)
    try:
        server = EmulatorServer(options)
        port = server.start()
    except PortInUse as exc:
        log.error("%s: stop whatever uses it, or choose another port with %s", exc, exc.flag)
        return 2
    except SchemaError as exc:
        log.error("%s: use a newer emulator, or another file with --data", exc)
        return 2
    except (DataInUse, DataFileError) as exc:
        log.error("%s", exc)
        return 2

    with StopSignals() as signals:  # before the banner: a caller may signal as soon as it reads it
        data = "in memory (gone at exit)" if options.data is None else str(options.data.resolve())
        log.info(
            "Durable Task Scheduler emulator ready\n"
            "  gRPC endpoint: http://%s:%d\n  dashboard:     %s\n  task hubs:     %s\n  data:          %s%s",
            args.host, port, (server.dashboard_url or "off (--dashboard-port 0)")
            + (" (read-only)" if options.dashboard_read_only and server.dashboard_url else ""),
            ", ".join(options.task_hubs), data,
            "\n  time:          skipping (--time-skipping)" if options.time_skipping else "",
        )
        if options.time_skipping and options.data is not None:
            log.warning("time skipping with a data file: skipped time is not stored, so what was stamped ahead of "
                        "the wall clock stays ahead after a restart (--in-memory avoids this)")
        sys.stderr.flush()
        signals.wait()
        log.info("stopping")
        server.stop()  # still caught: a second signal does not cut the stop short
    return 0


def console() -> int:
    """The ``dts-emulator`` command of the installed package: the same as ``python -m dts_emulator``."""
    return main(prog="dts-emulator")
