"""What every benchmark workload measures with: process CPU and memory, percentiles, a wrong answer."""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path


class WrongResult(AssertionError):
    """A workload finished but its answer is wrong."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (Linux /proc).

    Steadier than throughput on a shared machine: it counts the backend's work, not the
    time it waited for a core.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_state(pid: int) -> str:
    """The one-letter state of /proc/PID/stat: 'T' is stopped (SIGSTOP), 'S' sleeping, 'R' running."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentiles(values: Sequence[float], points: Sequence[int] = (50, 95, 99)) -> dict[int, float]:
    """Percentiles interpolated between the measured values, never beyond the largest.

    One value is every percentile of itself (a run cut short by its cap may time only one).
    """
    if not values:
        raise ValueError("no values to take percentiles of")
    if len(values) == 1:
        return {p: float(values[0]) for p in points}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {p: cuts[p - 1] for p in points}


def stop_process(process: subprocess.Popen | None, grace: float) -> None:
    """SIGCONT (a stopped process cannot act on SIGTERM), SIGTERM, then SIGKILL after ``grace`` seconds."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGCONT)
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
