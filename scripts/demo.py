"""``make demo``: use the scheduler at ENDPOINT, or start the built-in emulator; then worker and client.

Everything this script starts, it stops: at the end, on Ctrl-C, SIGTERM or SIGHUP, and as soon as
the emulator or the worker exits on its own (with that child's last lines). The worker's output
goes to ``.emulator/worker.log``; its warnings and errors also to the terminal, marked ``worker|``.
It exits with the client's status (2: it could not start; 1: the worker stopped).
"""

from __future__ import annotations

import logging
import os
import queue
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import settings  # noqa: E402
from scripts import children  # noqa: E402
from scripts.children import Child, Stopped  # noqa: E402
from scripts.single_run import AlreadyRunning, demo_locks  # noqa: E402

log = logging.getLogger("demo")
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
START_TIMEOUT = 30.0  # for the emulator's banner and the worker's "worker started", each
WORKER_LOG = Path(".emulator") / "worker.log"


class CannotRun(Exception):
    """The demo cannot go on; the message says why (exit status 2)."""


def dashboard_port(env=os.environ) -> int:
    text = env.get("DASHBOARD_PORT") or "8082"
    if not text.isdigit() or int(text) > 65535:
        raise CannotRun(f"DASHBOARD_PORT '{text}' is not a port number (0 to 65535; 0: no dashboard)")
    return int(text)


class Demo:
    def __init__(self, config: settings.Settings, client_args: list[str]):
        self.config, self.client_args = config, client_args
        self.exits: queue.Queue = queue.Queue()
        self.children: list[Child] = []
        self.endpoint = config.endpoint
        self.dashboard: int | None = None
        self.stopping = False  # from then on the emulator's and the worker's goodbyes are not shown

    def start(self, name: str, args: list[str], **kwargs) -> Child:
        child = Child(name, [sys.executable, *args], ROOT, self.exits, **kwargs)
        self.children.append(child)
        return child

    def stop_all(self) -> None:
        self.stopping = True
        for child in reversed(self.children):  # client, then worker, then emulator
            child.stop()

    def show_emulator_line(self, line: str) -> None:
        with children.TERMINAL:
            if not self.stopping:
                sys.stderr.write(line + "\n")
                sys.stderr.flush()

    def find_or_start_scheduler(self) -> None:
        url = urlsplit(self.config.endpoint)
        if url.port != 0 and self.config.answers(timeout=1.0):
            log.info("using the scheduler that answers at %s", self.config.endpoint)
            return
        if url.hostname not in LOCAL_HOSTS or self.config.secure_channel:
            raise CannotRun(f"no scheduler answers at {self.config.endpoint}, and it is not a local address to "
                            "start one on")
        port = 80 if url.port is None else url.port
        dashboard = dashboard_port()
        where = "a free port (ENDPOINT's port is 0)" if port == 0 else f"port {port}"
        log.info("starting the built-in emulator on %s, task hub '%s' (state in .emulator/)", where,
                 self.config.taskhub)
        emulator = self.start("emulator", ["-m", "dts_emulator", "--port", str(port),
                                           "--dashboard-port", str(dashboard), "--task-hubs", self.config.taskhub],
                              on_line=self.show_emulator_line,
                              ready=r"^\s+data: ")  # the banner's last line: the banner is shown whole first
        ready = emulator.wait_ready(START_TIMEOUT)
        if ready is None:
            if emulator.process.poll() is None:
                raise CannotRun(f"the emulator did not start within {START_TIMEOUT:.0f}s; see its messages above")
            raise CannotRun(f"the emulator could not start (exit status {emulator.process.returncode}); "
                            "see its messages above")
        served = next(m for line in emulator.lines if (m := re.search(r"gRPC endpoint: http://\S+:(\d+)", line)))
        self.endpoint = f"{url.scheme}://{url.hostname}:{served.group(1)}"
        self.dashboard = dashboard or None

    def run(self) -> int:
        self.find_or_start_scheduler()
        env = {"ENDPOINT": self.endpoint, "TASKHUB": self.config.taskhub}
        if os.environ.get(settings.CONNECTION_STRING_VARIABLE):
            env = {}  # the connection string says it all; the emulator case never gets here with one
        log.info("starting the worker (its output: %s; warnings and errors also here, marked 'worker|')", WORKER_LOG)
        echo = children.WorkerEcho(children.file_logger(ROOT / WORKER_LOG), muted=lambda: self.stopping)
        worker = self.start("worker", ["worker.py"], env=env, ready="worker started", on_line=echo)
        if worker.wait_ready(START_TIMEOUT) is None:
            return self.worker_stopped(worker, echo)
        client = self.start("client", ["client.py", *self.client_args], env=env)
        child, code = children.first_exit(self.exits)
        if child is worker:
            return self.worker_stopped(worker, echo)
        if child is not client:
            log.error("the emulator exited (status %s) while the demo ran; its last lines:\n%s", code,
                      child.last_lines())
            return 1
        return code

    def worker_stopped(self, worker: Child, echo: children.WorkerEcho) -> int:
        status = worker.process.poll()
        if status is not None:
            worker.finished.wait(5)  # its last lines read
        what = f"exited with status {status}" if status is not None else f"did not start within {START_TIMEOUT:.0f}s"
        if echo.shown_last:
            log.error("the worker %s, so the demo stops (its last lines are above; all of them in %s)", what,
                      WORKER_LOG)
        else:
            log.error("the worker %s, so the demo stops; its last lines (all of them in %s):\n%s", what,
                      WORKER_LOG, worker.last_lines())
        return 1


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="demo: %(message)s")
    children.raise_on_stop_signals()
    demo, locks = None, []
    try:
        config = settings.load()
        fixed = urlsplit(config.endpoint).port != 0
        for lock in demo_locks(ROOT, config.endpoint if fixed else None):
            locks.append(lock.acquire())
        demo = Demo(config, sys.argv[1:])
        code = demo.run()
        if code == 0 and demo.dashboard:
            hub = "" if config.taskhub == settings.DEFAULT_TASKHUB else f" ARGS=\"--task-hubs {config.taskhub}\""
            log.info("to look around afterwards: `make emulator%s`, then open http://localhost:%s "
                     "(the state is kept in .emulator/)", hub, demo.dashboard)
        return code
    except settings.SettingsError as exc:
        log.error("invalid settings: %s", exc)
        return 2
    except (CannotRun, AlreadyRunning) as exc:
        log.error("%s", exc)
        return 2
    except (KeyboardInterrupt, Stopped) as exc:
        reason = "Ctrl-C" if isinstance(exc, KeyboardInterrupt) else str(exc)
        with children.TERMINAL:  # the last line: the children's output is muted from here on
            if demo is not None:
                demo.stopping = True
            log.info("stopped (%s); stopping what the demo started", reason)
        return 130
    finally:
        children.ignore_stop_signals()  # a second Ctrl-C does not cut the stopping short
        if demo is not None:
            demo.stop_all()
        for lock in locks:
            lock.release()


if __name__ == "__main__":
    raise SystemExit(main())
