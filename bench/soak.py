"""The soak workload: steady load on one data file for a set time, sampled as it goes.

Bounded storage is a promise about time, not throughput: under a load that never stops, the
``-wal`` file, the database and the emulator's memory must level off, and calls must not get
slower. So clients repeat one call (an orchestration that makes one ``call_entity``, purged
once done, so that finished work leaves nothing behind) while others signal counters, and
every ``interval`` seconds a sample records the WAL and database sizes, the emulator's RSS
and the p50 of the calls made since the last sample.

WAL bytes per operation are measured apart, at the end: a reader opened here pins the log
(no checkpoint can restart it while the reader's snapshot is open), so the log's frame count
then grows by exactly what the operations in between write.
"""

from __future__ import annotations

import logging
import sqlite3
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from durabletask import client as dt_client
from durabletask import entities

from bench.common import WrongResult, rss_mb

QUIET = logging.getLogger("bench-client")
MIB = 1024 * 1024


@dataclass
class Sample:
    seconds: float
    operations: int  # calls and signals done so far
    wal_mib: float
    db_mib: float
    rss_mb: float
    call_p50_ms: float


@dataclass
class Soak:
    samples: list[Sample] = field(default_factory=list)
    wal_bytes_per_operation: float = 0.0
    page_size: int = 0

    def table(self) -> str:
        rows = ["| after s | operations | WAL MiB | database MiB | emulator RSS MB | call p50 ms |",
                "|---|---|---|---|---|---|"]
        rows += [f"| {s.seconds:.0f} | {s.operations:,} | {s.wal_mib:.1f} | {s.db_mib:.1f} | {s.rss_mb:.0f} | "
                 f"{s.call_p50_ms:.1f} |" for s in self.samples]
        return "\n".join(rows)


def file_mib(path: Path) -> float:
    try:
        return path.stat().st_size / MIB
    except FileNotFoundError:
        return 0.0  # no WAL yet, or just truncated away


class Load:
    """Callers and signallers in threads until stopped; each call's latency is kept for the next sample."""

    def __init__(self, new_client: Callable[[], dt_client.TaskHubGrpcClient], callers: int, signallers: int):
        self._new_client = new_client
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._latencies: list[float] = []
        self.operations = 0
        self.signals: dict[str, int] = {}
        self.errors: list[BaseException] = []
        run = uuid.uuid4().hex[:8]
        self.counters = [entities.EntityInstanceId("counter", f"soak-{run}-{k}") for k in range(4)]
        self._threads = [threading.Thread(target=self._guard, args=(self._call, f"soak-{run}-c{i}"), daemon=True)
                         for i in range(callers)]
        self._threads += [threading.Thread(target=self._guard, args=(self._signal, i), daemon=True)
                          for i in range(signallers)]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(120)

    def take_latencies(self) -> list[float]:
        with self._lock:
            taken, self._latencies = self._latencies, []
            return taken

    def _guard(self, body, arg) -> None:
        client = self._new_client()
        try:
            body(client, arg)
        except BaseException as exc:  # noqa: BLE001 - reported by the run, which then fails
            self.errors.append(exc)
            self._stop.set()
        finally:
            client.close()

    def _call(self, client: dt_client.TaskHubGrpcClient, prefix: str) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            started = time.perf_counter()
            instance_id = client.schedule_new_orchestration("single_call", input=f"{prefix}-{n}",
                                                            instance_id=f"{prefix}-{n}")
            state = client.wait_for_orchestration_completion(instance_id, timeout=60)
            elapsed = (time.perf_counter() - started) * 1000
            if state is None or state.serialized_output != "0":
                raise WrongResult(f"single_call {instance_id} returned {state and state.serialized_output!r}")
            client.purge_orchestration(instance_id)
            with self._lock:
                self._latencies.append(elapsed)
                self.operations += 1

    def _signal(self, client: dt_client.TaskHubGrpcClient, index: int) -> None:
        n = 0
        while not self._stop.is_set():
            counter = self.counters[n % len(self.counters)]
            client.signal_entity(counter, "add", 1)
            n += 1
            with self._lock:
                self.signals[str(counter)] = self.signals.get(str(counter), 0) + 1
                self.operations += 1
            time.sleep(0.002)  # a steady trickle, not a flood: the callers are what the samples time


def wal_frames(db: sqlite3.Connection) -> int:
    """The frames in the log now; a PASSIVE checkpoint never waits for anyone."""
    return db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]


def wal_per_operation(data: Path, new_client: Callable[[], dt_client.TaskHubGrpcClient],
                      calls: int, attempts: int = 3) -> tuple[float, int]:
    """WAL bytes written per call (one single_call orchestration and its purge), and the page size.

    A reader's open snapshot keeps the log from starting over, so the frames it gains are the
    bytes written. But a snapshot begun while the log was fully copied back reads the database
    file alone and pins nothing (SQLite's read mark 0): then the log restarts under it and the
    count is void, so the measure is taken again, a few times at most.
    """
    for _ in range(attempts):
        before, after, page = _frames_while_pinned(data, new_client, calls)
        if after > before:
            return (after - before) * (page + 24) / calls, page
    raise WrongResult(f"the log did not grow while pinned ({before} -> {after} frames, {attempts} tries): "
                      "the measure is void")


def _frames_while_pinned(data: Path, new_client: Callable[[], dt_client.TaskHubGrpcClient],
                         calls: int) -> tuple[int, int, int]:
    pin = sqlite3.connect(str(data), isolation_level=None)
    probe = sqlite3.connect(str(data), isolation_level=None)
    client = new_client()
    try:
        page = pin.execute("PRAGMA page_size").fetchone()[0]
        pin.execute("BEGIN")
        pin.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the snapshot that pins the log
        before = wal_frames(probe)
        run = uuid.uuid4().hex[:8]
        for i in range(calls):
            instance_id = client.schedule_new_orchestration("single_call", input=f"w-{run}-{i}",
                                                            instance_id=f"w-{run}-{i}")
            state = client.wait_for_orchestration_completion(instance_id, timeout=60)
            if state is None or state.serialized_output != "0":
                raise WrongResult(f"single_call {instance_id} returned {state and state.serialized_output!r}")
            client.purge_orchestration(instance_id)
        after = wal_frames(probe)
        pin.execute("COMMIT")
    finally:
        client.close()
        pin.close()
        probe.close()
    return before, after, page


def soak(data: Path, pid: int, new_client: Callable[[], dt_client.TaskHubGrpcClient], seconds: float,
         interval: float, callers: int = 4, signallers: int = 1, wal_calls: int = 50) -> Soak:
    """Run the load for ``seconds`` against the emulator ``pid`` serving ``data``; samples every ``interval``."""
    result = Soak()
    wal = data.with_name(data.name + "-wal")
    load = Load(new_client, callers, signallers)
    started = time.monotonic()
    load.start()
    try:
        while (now := time.monotonic()) - started < seconds and not load.errors:
            time.sleep(min(interval, seconds - (now - started)))  # sampling is timed: nothing to wait for
            latencies = load.take_latencies()
            result.samples.append(Sample(time.monotonic() - started, load.operations, file_mib(wal), file_mib(data),
                                         rss_mb(pid), statistics.median(latencies) if latencies else float("nan")))
            print(f"soak {result.samples[-1]}", flush=True)
    finally:
        load.stop()
    if load.errors:
        raise load.errors[0]
    check_counters(new_client, load)
    result.wal_bytes_per_operation, result.page_size = wal_per_operation(data, new_client, wal_calls)
    return result


def check_counters(new_client: Callable[[], dt_client.TaskHubGrpcClient], load: Load) -> None:
    """Every signal applied once: a soak that is fast and wrong fails."""
    client = new_client()
    try:
        deadline = time.monotonic() + 120
        while True:
            values = {}
            for counter in load.counters:
                meta = client.get_entity(counter)
                values[str(counter)] = meta.get_typed_state(int) if meta else 0
            if all(values[k] == load.signals.get(k, 0) for k in values):
                return
            if time.monotonic() > deadline:
                raise WrongResult(f"counters {values} never reached the signals sent {load.signals}")
            time.sleep(0.05)  # the scheduler offers no wait-for-entity call
    finally:
        client.close()
