"""The demo's child processes: each watched by a thread, so the demo hears at once when one exits.

A child runs in a session of its own: Ctrl-C in the terminal reaches the demo only, which
stops the children in order (client, worker, emulator) instead of each printing a traceback.
Signals that should end the demo (SIGTERM from ``timeout`` or an IDE, SIGHUP when the terminal
closes) become ``Stopped``, handled like Ctrl-C.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("demo")
STOP_TIMEOUT = 15.0  # seconds a child has to stop on SIGTERM before it is killed
LAST_LINES = 12  # what the demo shows of a child that exited
# Held while a child's line is written to the terminal, and while the demo says it stops: once that is
# said, nothing of a child's may follow it (a worker retrying a failing batch prints on and on).
TERMINAL = threading.Lock()


class Stopped(Exception):
    """SIGTERM or SIGHUP arrived: stop like Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)


def raise_on_stop_signals() -> None:
    """SIGTERM and SIGHUP (where it exists) raise ``Stopped`` in the main thread."""
    def stop(signum, _frame):
        raise Stopped(signum)

    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), stop)


STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


def ignore_stop_signals() -> None:
    """While the demo stops its children: a second signal must not cut that short."""
    for name in STOP_SIGNALS:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


class Child:
    """A child process; its output (when captured) goes line by line to ``on_line``, and its exit to ``exits``."""

    def __init__(self, name: str, args: list[str], cwd: Path, exits: queue.Queue, env: dict[str, str] | None = None,
                 on_line: Callable[[str], None] | None = None, ready: str | None = None):
        """``ready``: a pattern for the line that says the child is ready (see ``wait_ready``)."""
        self.name = name
        self.lines: collections.deque[str] = collections.deque(maxlen=LAST_LINES)
        self._on_line = on_line
        self._ready = re.compile(ready) if ready else None
        self.ready: re.Match | None = None
        self.finished = threading.Event()  # its output read to the end and its exit status known
        self._changed = threading.Condition()
        captured = on_line is not None
        self.process = subprocess.Popen(
            args, cwd=cwd, env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE if captured else None, stderr=subprocess.STDOUT if captured else None,
            text=True, errors="replace", start_new_session=True)
        threading.Thread(target=self._watch, args=(exits,), name=f"demo-{name}", daemon=True).start()

    def _watch(self, exits: queue.Queue) -> None:
        if self.process.stdout is not None:
            for line in self.process.stdout:
                line = line.rstrip("\n")
                with self._changed:
                    self.lines.append(line)
                    if self._ready and self.ready is None:
                        self.ready = self._ready.search(line)
                    self._changed.notify_all()
                self._on_line(line)
        code = self.process.wait()
        self.finished.set()
        with self._changed:
            self._changed.notify_all()
        exits.put((self, code))

    def wait_ready(self, timeout: float) -> re.Match | None:
        """The line that matched ``ready``; None if the child exits or ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.ready is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.process.poll() is not None:
                    return None
                # Woken by each line and by the exit; the cap lets a stop signal's handler run.
                self._changed.wait(min(remaining, 0.5))
            return self.ready

    def last_lines(self) -> str:
        return "\n".join(f"  {line}" for line in self.lines)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``STOP_TIMEOUT``; waits until it is gone."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop on SIGTERM within %.0fs; killing it", self.name, STOP_TIMEOUT)
            self.process.kill()
            self.process.wait()


def first_exit(exits: queue.Queue) -> tuple[Child, int]:
    """Block until a child exits; wakes twice a second so that a stop signal's handler runs promptly."""
    while True:
        try:
            return exits.get(timeout=0.5)
        except queue.Empty:
            continue


class WorkerEcho:
    """Each line of the worker's output goes to its log file; warnings, errors and tracebacks also to the terminal.

    A log record starts with a date and time; the lines after it (a traceback) belong to it. Lines
    before the first record (an ImportError before logging is set up) are shown.
    """

    RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[.,]\d+ .*?\b(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b")
    SHOWN = {"WARNING", "ERROR", "CRITICAL"}

    def __init__(self, log_file: logging.Logger, muted: Callable[[], bool] = lambda: False, terminal=None):
        self.log_file, self.muted = log_file, muted
        self.terminal = terminal or sys.stderr
        self.showing = True
        self.shown_last = False  # whether the newest line went to the terminal

    def __call__(self, line: str) -> None:
        self.log_file.info(line)
        record = self.RECORD.match(line)
        if record:
            self.showing = record.group(1) in self.SHOWN
        with TERMINAL:
            self.shown_last = self.showing and not self.muted()
            if self.shown_last:
                self.terminal.write(f"worker| {line}\n")  # one write: a line is never split by another
                self.terminal.flush()


def file_logger(path: Path, max_bytes: int = 5_000_000) -> logging.Logger:
    """A logger that writes lines as they are to ``path``, kept under ``max_bytes`` (one older file kept)."""
    from logging.handlers import RotatingFileHandler

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")  # this run's lines only (the handler appends)
    logger = logging.getLogger(f"demo.file.{path}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    handler = RotatingFileHandler(path, maxBytes=max_bytes, backupCount=1, encoding="utf-8", delay=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    return logger
