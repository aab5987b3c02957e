"""Starting and stopping inside a container: signals, a bounded stop, and health endpoints for probes.

Container Apps stops a replica with SIGTERM and kills it when its grace period
(``terminationGracePeriodSeconds`` in infra/resources.bicep) runs out. A client round can wait
60 s per orchestration and the SDK worker's stop waits for work items without a limit, so after
the first SIGTERM or Ctrl-C each process gets STOP_SECONDS to finish what it is doing, then exits
with a warning: the scheduler hands unfinished work items to another worker, and a cut-short demo
round changes nothing the next round needs. A second signal exits at once.

Container Apps probes over HTTP or TCP only, and neither process has a port, so with HEALTH_PORT
set (as infra/ does) a thread answers ``/live`` (200 while Python runs) and ``/ready`` (200 from
``ready()`` until the stop signal: a new revision replaces the old only once it runs). Unset, as on
a developer's machine beside the emulator, nothing listens.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STOP_SECONDS = 15.0  # infra/resources.bicep's grace period must be longer; tests/deployment/test_shutdown.py checks it
HEALTH_PORT_VARIABLE = "HEALTH_PORT"
GIVE_UP_STATUS = 1

log = logging.getLogger("lifecycle")


class Lifecycle:
    """One process's stop event, its deadline after the first signal, and its readiness."""

    def __init__(self, name: str, stop_seconds: float = STOP_SECONDS):
        self.name = name
        self.stop_seconds = stop_seconds
        self.stopping = threading.Event()
        self._ready = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    def on_signals(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._signalled)

    def _signalled(self, signum: int, _frame) -> None:
        if self.stopping.is_set():
            self._give_up(f"a second {signal.Signals(signum).name}")
            return
        self.stopping.set()
        log.info("%s: %s received; stopping within %.0fs", self.name, signal.Signals(signum).name,
                 self.stop_seconds)
        timer = threading.Timer(self.stop_seconds, self._give_up, args=(f"{self.stop_seconds:.0f}s passed",))
        timer.daemon = True
        timer.start()

    def _give_up(self, why: str) -> None:
        """Exit now, without waiting for threads that may never end (the SDK's are not daemons)."""
        log.warning("%s: still stopping and %s: exiting now; unfinished work items go to another worker",
                    self.name, why)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        logging.shutdown()
        os._exit(GIVE_UP_STATUS)

    def ready(self) -> None:
        self._ready.set()

    def is_ready(self) -> bool:
        return self._ready.is_set() and not self.stopping.is_set()

    def serve_health(self, env: Mapping[str, str] | None = None) -> int | None:
        """Answer the probes on HEALTH_PORT, if set; returns the port listened on."""
        value = (os.environ if env is None else env).get(HEALTH_PORT_VARIABLE, "").strip()
        if not value:
            return None
        if not value.isdigit() or not 0 <= int(value) <= 65535:
            raise ValueError(f"{HEALTH_PORT_VARIABLE} '{value}' is not a port number (0-65535)")
        lifecycle = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the name http.server calls
                checks = {"/live": lambda: True, "/ready": lifecycle.is_ready}
                check = checks.get(self.path)
                status = 404 if check is None else 200 if check() else 503
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):  # a probe every few seconds is not worth a log line
                pass

        self._server = ThreadingHTTPServer(("0.0.0.0", int(value)), Handler)  # noqa: S104 - probes come from outside
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="health", daemon=True).start()
        port = self._server.server_address[1]
        log.info("%s: health endpoints /live and /ready on port %d", self.name, port)
        return port

    def close_health(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
