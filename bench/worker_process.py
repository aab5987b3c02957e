"""bench/bench_worker.py as a child process: its output read as it comes, and stopped for sure.

A thread collects the worker's lines, so that waiting for one can time out (a frozen worker
prints nothing) and a chatty worker never blocks on a full pipe.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.common import stop_process

ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    def __init__(self, address: str, *options: str):
        self.proc = subprocess.Popen([sys.executable, "bench/bench_worker.py", address, *options], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:  # end of output: wake whoever waits, so that they stop waiting
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> re.Match | None:
        """The first line matching ``pattern``; None after ``timeout`` seconds or when the worker has exited."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = next((m for line in self.lines if (m := regex.search(line))), None)
                remaining = deadline - time.monotonic()
                if found or remaining <= 0 or self.proc.poll() is not None:
                    return found
                self._changed.wait(min(remaining, 0.5))

    def ready(self, timeout: float = 30) -> WorkerProcess:
        if not self.wait_for("bench worker ready", timeout):
            self.stop()
            raise RuntimeError(f"the bench worker did not start: {self.lines[-5:]}")
        return self

    def stop(self, timeout: float = 5) -> None:
        """Stopped for sure, also when frozen. A worker whose stream a starved backend never
        served can take the SDK's 30 s to stop: it is killed after ``timeout``."""
        stop_process(self.proc, timeout)
