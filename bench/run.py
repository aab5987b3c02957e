"""``make bench``: the counter workloads on five backends, measured in one run on one machine.

Backends: the built-in emulator as it ships (persistent SQLite), the same with its entity
operation log off (``--entity-log 0``: what the log costs), the emulator with ``--in-memory``,
the emulator with its SQLite writes skipped (bench/emulator_without_writes.py, a measuring
device: it shows what persistence costs), and durabletask.testing's in-memory
backend in its own process. Each gets the same worker process (bench/bench_worker.py) and
the same client settings.

Workloads, each checked for correctness (a fast wrong answer fails the run):
  orchestrations  N counter_workflow instances scheduled at once, until all complete
                  (and the backend process's CPU time per orchestration)
  signals         S client signals `add 1` from T threads over K entities, until all applied
                  (and the backend's CPU time per signal)
  latency         sequential orchestrations that each make one call_entity: p50/p95/p99
  demo            client.py's wall time (Part 1, --counter-only)
Under pressure (bench/pressure.py), once per backend, the log-off and writes-skipped ones left out:
  waiting         W clients blocked in WaitForInstanceCompletion (proved to be at the server),
                  then M new counter_workflow orchestrations one after another: p50/p99, RSS
  frozen          one of two workers stops holding a work item: the time until the other has
                  done all the work, and exact answers after the frozen one is thawed
On one data file (bench/soak.py), the persistent emulator only:
  soak            steady calls and signals for a set time: WAL and database size, RSS and call
                  p50 sampled over time (they must stay flat), and WAL bytes per call

Writes bench/results/latest.json, latest.md and chart.png, and the table into docs/benchmarks.md.
--workloads and --backends run a part; --quick runs everything at tiny sizes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import platform
import queue
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from durabletask import client as dt_client  # noqa: E402
from durabletask import entities  # noqa: E402

from bench import pressure, soak  # noqa: E402
from bench.common import WrongResult, cpu_seconds, free_port, percentiles, rss_mb, stop_process  # noqa: E402, F401
from bench.worker_process import WorkerProcess  # noqa: E402

RESULTS = ROOT / "bench" / "results"
QUIET = logging.getLogger("bench-client")
QUIET.setLevel(logging.WARNING)
BASELINE = "in-memory backend (durabletask.testing)"
LOG_OFF = "emulator, entity operation log off (--entity-log 0)"
WITHOUT_WRITES = "emulator, SQLite writes skipped (measurement only)"


def wait_for_line(process: subprocess.Popen, pattern: str, timeout: float = 30) -> re.Match:
    """The first line of the process's output that matches; its last lines in the error otherwise.

    A thread reads the output, to its end: the deadline holds for a process that prints nothing,
    and a chatty one never blocks on a full pipe. So call it once per process.
    """
    lines: queue.Queue[str | None] = queue.Queue()
    found = threading.Event()

    def read() -> None:
        for line in process.stdout:
            if not found.is_set():  # afterwards only drained
                lines.put(line)
        lines.put(None)  # the end: it exited (or closed its output)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    ended = False
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            ended = True
            break
        if m := re.search(pattern, line):
            found.set()
            return m
        seen.append(line.rstrip())
    why = "ended its output" if ended else f"printed nothing like it within {timeout:g} s"
    output = "\n".join(seen[-10:]) or "(no output)"
    raise RuntimeError(f"{process.args} did not print {pattern!r}: it {why}; its last lines:\n{output}")


@dataclass
class Backend:
    key: str  # what --backend calls it
    name: str
    args: list[str]
    ready: str
    process: subprocess.Popen | None = None
    port: int = 0
    cwd: Path = ROOT  # where ``python -m dts_emulator`` finds its package (bench/compare.py runs other checkouts)

    def start(self) -> str:
        self.port = free_port()
        args = [a.replace("{port}", str(self.port)) for a in self.args]
        self.process = subprocess.Popen(args, cwd=self.cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for_line(self.process, self.ready)
        return f"127.0.0.1:{self.port}"

    def stop(self, grace: float = 20) -> None:
        stop_process(self.process, grace)


def backends(data_dir: Path) -> list[Backend]:
    options = ["--port", "{port}", "--dashboard-port", "0"]
    emulator = [sys.executable, "-m", "dts_emulator", *options]
    return [
        Backend("sqlite", "emulator (SQLite, default)", [*emulator, "--data", str(data_dir / "bench.db")],
                "gRPC endpoint"),
        Backend("log-off", LOG_OFF, [*emulator, "--data", str(data_dir / "log-off.db"), "--entity-log", "0"],
                "gRPC endpoint"),
        Backend("in-memory", "emulator --in-memory", [*emulator, "--in-memory"], "gRPC endpoint"),
        Backend("writes-skipped", WITHOUT_WRITES, [sys.executable, "bench/emulator_without_writes.py", *options,
                                                   "--data", str(data_dir / "skipped.db")], "gRPC endpoint"),
        Backend("testing", BASELINE, [sys.executable, "bench/in_memory_server.py", "{port}"], "listening on"),
    ]


@dataclass
class Sizes:
    orchestrations: int = 200
    signals: int = 2000
    threads: int = 8
    entities: int = 20
    calls: int = 100
    # the pressure workloads (bench/pressure.py)
    waiting_clients: int = 1000
    new_orchestrations: int = 20
    orchestration_cap_s: float = pressure.ORCHESTRATION_CAP
    frozen_orchestrations: int = 40
    frozen_signals: int = 200
    frozen_entities: int = 4
    frozen_cap_s: float = pressure.FROZEN_CAP
    liveness_timeout_s: float | None = 5.0  # passed as --liveness-timeout where the emulator has it; None: its default
    # the soak workload (bench/soak.py)
    soak_s: float = 180.0
    soak_samples: int = 9


@dataclass
class Result:
    backend: str
    figures: dict[str, float] = field(default_factory=dict)


def workload_orchestrations(client, n: int) -> float:
    run = uuid.uuid4().hex[:8]
    start = time.perf_counter()
    ids = [client.schedule_new_orchestration("counter_workflow", input=f"o-{run}-{i}") for i in range(n)]
    for i, instance_id in enumerate(ids):
        state = client.wait_for_orchestration_completion(instance_id, timeout=300)
        expected = f'"Counter \'o-{run}-{i}\' final value: 12"'
        if state is None or state.serialized_output != expected:
            raise WrongResult(f"orchestration {i} returned {state and state.serialized_output!r}, not {expected}")
    return n / (time.perf_counter() - start)


def entity_value(client, eid) -> int | None:
    meta = client.get_entity(eid)
    return meta.get_typed_state(int) if meta else None


def signals_sent(sizes: Sizes) -> int:
    """The signals the signal workload sends: the same number from each thread."""
    return sizes.signals // sizes.threads * sizes.threads


def workload_signals(client_factory, sizes: Sizes) -> float:
    run = uuid.uuid4().hex[:8]
    total = signals_sent(sizes)
    per_thread = total // sizes.threads
    # No more counters than signals: one that is never signalled never exists to be read.
    ids = [entities.EntityInstanceId("counter", f"s-{run}-{k}") for k in range(min(sizes.entities, total))]
    clients = [client_factory() for _ in range(sizes.threads)]

    def send(t: int) -> None:
        for i in range(per_thread):
            clients[t].signal_entity(ids[(t * per_thread + i) % len(ids)], "add", 1)

    start = time.perf_counter()
    with ThreadPoolExecutor(sizes.threads) as pool:
        list(pool.map(send, range(sizes.threads)))
    expected = {str(eid): 0 for eid in ids}
    for t in range(sizes.threads):
        for i in range(per_thread):
            expected[str(ids[(t * per_thread + i) % len(ids)])] += 1
    checker = clients[0]
    deadline = time.monotonic() + 300
    pending = list(ids)
    while pending:
        pending = [eid for eid in pending if entity_value(checker, eid) != expected[str(eid)]]
        if pending and time.monotonic() > deadline:
            raise WrongResult(f"{len(pending)} counters never reached their signal count")
        if pending:
            time.sleep(0.005)  # the scheduler offers no wait-for-entity call
    elapsed = time.perf_counter() - start
    for eid in ids:  # applied exactly once: not a signal more
        if entity_value(checker, eid) != expected[str(eid)]:
            raise WrongResult(f"{eid} holds {entity_value(checker, eid)}, expected {expected[str(eid)]}")
    for c in clients:
        c.close()
    return total / elapsed


def workload_latency(client, n: int) -> dict[str, float]:
    run = uuid.uuid4().hex[:8]
    latencies = []
    for i in range(n):
        start = time.perf_counter()
        instance_id = client.schedule_new_orchestration("single_call", input=f"l-{run}-{i}")
        state = client.wait_for_orchestration_completion(instance_id, timeout=60)
        latencies.append((time.perf_counter() - start) * 1000)
        if state is None or state.serialized_output != "0":
            raise WrongResult(f"single_call {i} returned {state and state.serialized_output!r}, not 0")
    q = percentiles(latencies)
    return {"call p50 ms": q[50], "call p95 ms": q[95], "call p99 ms": q[99]}


def workload_demo(address: str) -> float:
    key = f"d-{uuid.uuid4().hex[:8]}"
    start = time.perf_counter()
    # Part 1 only: the account parts need entity queries, which the writes-skipped device cannot answer.
    result = subprocess.run([sys.executable, "client.py", key, "--counter-only"], cwd=ROOT, capture_output=True,
                            text=True, env={"PATH": "/usr/bin:/bin", "ENDPOINT": f"http://{address}"}, timeout=300)
    elapsed = time.perf_counter() - start
    if result.returncode != 0 or f"Entity '{key}' value: 75" not in result.stdout:
        raise WrongResult(f"client.py failed ({result.returncode}): {result.stdout[-500:]}{result.stderr[-500:]}")
    return elapsed


@contextlib.contextmanager
def served(backend: Backend) -> Iterator[tuple[str, dt_client.TaskHubGrpcClient]]:
    """The backend started, a bench worker on it and a client: (address, client); all stopped at the
    end, each even if stopping another fails."""
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(backend.stop)
        address = backend.start()
        worker = WorkerProcess(address)
        cleanup.callback(worker.stop, 30)
        worker.ready()
        client = dt_client.TaskHubGrpcClient(host_address=address, logger=QUIET)
        cleanup.callback(client.close)
        yield address, client


def measure(backend: Backend, sizes: Sizes) -> Result:
    with served(backend) as (address, client):
        result = Result(backend.name)
        # One warm-up orchestration, so that connection set-up is not measured.
        workload_orchestrations(client, 1)
        pid = backend.process.pid
        cpu = cpu_seconds(pid)
        result.figures["orchestrations/s"] = workload_orchestrations(client, sizes.orchestrations)
        result.figures["backend CPU ms/orchestration"] = (cpu_seconds(pid) - cpu) * 1000 / sizes.orchestrations

        def new_client():
            return dt_client.TaskHubGrpcClient(host_address=address, logger=QUIET)

        cpu = cpu_seconds(pid)
        result.figures["signals/s"] = workload_signals(new_client, sizes)
        result.figures["backend CPU ms/signal"] = (cpu_seconds(pid) - cpu) * 1000 / signals_sent(sizes)
        result.figures.update(workload_latency(client, sizes.calls))
        result.figures["demo s"] = workload_demo(address)
        result.figures["backend RSS MB"] = rss_mb(pid)
        return result


# The writes-skipped device differs from the emulator only in persistence, which neither pressure
# workload is about: it is left out of them.
PRESSURE_BACKENDS = ("sqlite", "in-memory", "testing")
LIVENESS_FLAG = "--liveness-timeout"


def emulator_has_flag(flag: str) -> bool:
    help_text = subprocess.run([sys.executable, "-m", "dts_emulator", "--help"], cwd=ROOT, capture_output=True,
                               text=True, timeout=60).stdout
    return flag in help_text


def with_liveness(backend: Backend, seconds: float) -> Backend:
    """The backend with the emulator's liveness timeout set, where it is an emulator that has the flag."""
    if backend.key == "testing":
        return backend
    return dataclasses.replace(backend, args=[*backend.args, LIVENESS_FLAG, f"{seconds:g}"])


def measure_waiting(backend: Backend, sizes: Sizes) -> dict:
    address = backend.start()
    try:
        r = pressure.waiting_clients(address, backend.process.pid, sizes.waiting_clients, sizes.new_orchestrations,
                                     cap=sizes.orchestration_cap_s)
    finally:
        backend.stop(grace=5)  # a backend whose threads sit in waits may not exit by itself
    q = percentiles(r.latencies_ms) if r.latencies_ms else {50: None, 99: None}
    return {"waiting clients": r.waiting, "new orchestration p50 ms": q[50], "new orchestration p99 ms": q[99],
            "new orchestrations timed": len(r.latencies_ms), "new orchestrations timed out": r.timeouts,
            "new orchestrations failed": dict(r.errors), "waits ended before timing": dict(r.waits_ended_before),
            "waits ended while measuring": dict(r.waits_ended),
            "waits sent": r.probe.sent, "waits all read by the server": r.probe.read_by_server,
            "sample of GetInstance": r.probe.sampled, "sample answered": r.probe.answered,
            "sample unfinished": r.probe.unfinished, "sample errors": dict(r.probe.errors),
            "backend RSS MB": r.rss_mb}


def measure_frozen(backend: Backend, sizes: Sizes, liveness: bool) -> dict:
    liveness = liveness and sizes.liveness_timeout_s is not None and backend.key != "testing"
    if liveness:
        backend = with_liveness(backend, sizes.liveness_timeout_s)
    address = backend.start()
    try:
        r = pressure.frozen_worker(address, sizes.frozen_orchestrations, sizes.frozen_signals, sizes.frozen_entities,
                                   cap=sizes.frozen_cap_s)
    finally:
        backend.stop(grace=5)
    return {"frozen worker: work done elsewhere s": r.recovered_s, "frozen cap s": sizes.frozen_cap_s,
            "frozen worker held": r.held,
            "late completion": r.late_completion, "unfinished after thaw": r.unfinished, "wrong after thaw": r.wrong,
            "liveness timeout s": sizes.liveness_timeout_s if liveness else None}


def pressure_table(rows: list[dict], sizes: Sizes) -> str:
    """One row per backend: the waiting-clients and frozen-worker figures, with their caps spelled out."""
    def ms(value):
        return "-" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"

    def waiting(row):
        if "new orchestration p50 ms" not in row:
            return ["-"] * 4
        timeouts = row["new orchestrations timed out"]
        p50, p99 = ms(row["new orchestration p50 ms"]), ms(row["new orchestration p99 ms"])
        if timeouts:
            p99 += f" ({timeouts} timed out at {sizes.orchestration_cap_s:g} s)"
        failed = {f"new orchestrations {k}": v for k, v in row["new orchestrations failed"].items()}
        failed |= {f"waits {k} before timing": v for k, v in row["waits ended before timing"].items()}
        failed |= {f"waits {k} while timing": v for k, v in row["waits ended while measuring"].items()}
        read = "read" if row["waits all read by the server"] else "sent, NOT all read by the server"
        sample = f"{row['sample unfinished']}/{row['sample of GetInstance']} unfinished" + "".join(
            f", {code} x{n}" for code, n in row["sample errors"].items())
        return [p50, p99, f"{row['backend RSS MB']:.0f}",
                f"{row['waits sent']:,}/{row['waiting clients']:,} {read}; sample {sample}; "
                + (", ".join(f"{k} x{v}" for k, v in failed.items()) or "none failed")]

    def frozen(row):
        if "frozen worker: work done elsewhere s" not in row:
            return ["-"] * 2
        seconds = row["frozen worker: work done elsewhere s"]
        cell = f"not recovered within {sizes.frozen_cap_s:g} s cap" if seconds is None else f"{seconds:.1f}"
        if row["unfinished after thaw"]:
            cell += f"; {len(row['unfinished after thaw'])} answers still unfinished after the thaw"
        if row["wrong after thaw"]:
            name, what = next(iter(row["wrong after thaw"].items()))
            cell += f"; WRONG after the thaw: {name} {what}"
        return [cell, row["late completion"]]

    lines = [f"| backend | with {sizes.waiting_clients:,} waiting clients: new orchestration p50 ms | p99 ms | "
             "RSS MB | waits at the server; GetInstance sample; failures "
             "| frozen worker: time until its work is done elsewhere, s | late completion of the frozen worker |",
             "|---" * 7 + "|"]
    for row in rows:
        lines.append(f"| {row['backend']} | " + " | ".join(waiting(row) + frozen(row)) + " |")
    return "\n".join(lines)


def table(results: list[Result]) -> str:
    """Ratios against the baseline where it was measured (--backends may leave it out)."""
    base = next((r for r in results if r.backend == BASELINE), None)
    keys = list(results[0].figures)
    lines = ["| backend | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for r in results:
        cells = []
        for k in keys:
            value, ref = r.figures[k], base.figures[k] if base else 0
            ratio = "" if r is base or not ref else f" ({value / ref:.2f}x)"
            cells.append(f"{value:,.1f}{ratio}" if value >= 10 else f"{value:.2f}{ratio}")
        lines.append(f"| {r.backend} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def spread(runs: dict[str, list[Result]], keys: tuple[str, ...] = ("orchestrations/s", "signals/s")) -> str:
    """Each backend's lowest and highest per-round ratio: how far one round can stray from the median."""
    base = runs[BASELINE]
    lines = []
    for name, rs in runs.items():
        if name == BASELINE or len(rs) < 2:
            continue
        ranges = []
        for key in keys:
            ratios = [r.figures[key] / b.figures[key] for r, b in zip(rs, base, strict=True)]
            ranges.append(f"{key} {min(ratios):.2f}-{max(ratios):.2f}x")
        lines.append(f"- {name}: " + ", ".join(ranges))
    return "\n".join(lines)


COLORS = {"emulator (SQLite, default)": "#0b5cad", LOG_OFF: "#2f7fd0", "emulator --in-memory": "#57a3e6",
          WITHOUT_WRITES: "#b8d6f2",
          BASELINE: "#999999"}


def chart(results: list[Result], rows: list[dict], path: Path) -> None:
    """Throughput panels on one line, pressure panels (a capped figure drawn at its cap, hatched) below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    throughput = [("orchestrations/s", "orchestrations / s (higher is better)"),
                  ("signals/s", "signals / s (higher is better)"),
                  ("backend CPU ms/orchestration", "backend CPU ms / orchestration (lower is better)"),
                  ("call p50 ms", "call_entity p50 ms (lower is better)"),
                  ("call p99 ms", "call_entity p99 ms (lower is better)")]
    waiting = rows[0].get("waiting clients", 0) if rows else 0
    pressure_panels = [(key, title) for key, title in [
        ("new orchestration p50 ms", f"new orchestration p50 ms, {waiting:,} clients waiting (log)"),
        ("frozen worker: work done elsewhere s", "frozen worker: s until its work is done elsewhere")]
        if any(key in row for row in rows)]
    lines = [line for line in (throughput if results else [], pressure_panels) if line]
    if not lines:
        return
    fig, axes = plt.subplots(len(lines), len(throughput), figsize=(20, 4 * len(lines)), squeeze=False)
    for ax, (key, title) in zip(axes[0], throughput if results else [], strict=False):
        ax.bar(range(len(results)), [r.figures[key] for r in results], color=[COLORS[r.backend] for r in results])
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(results)), [textwrap.fill(r.backend.split(" (")[0], 11) for r in results], fontsize=8)
    for ax, (key, title) in zip(axes[-1], pressure_panels, strict=False):
        shown = [row for row in rows if key in row]
        values, capped = [], []
        for row in shown:
            value = row[key]
            if key == "frozen worker: work done elsewhere s":
                capped.append(value is None)
                values.append(row["frozen cap s"] if value is None else value)
            else:
                capped.append(bool(row["new orchestrations timed out"]))
                values.append(value if value is not None else float("nan"))  # none completed: no bar
        bars = ax.bar(range(len(shown)), values, color=[COLORS[row["backend"]] for row in shown])
        for bar, cut in zip(bars, capped, strict=True):
            if cut:
                bar.set_hatch("//")
                ax.annotate("cap", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                            va="bottom", fontsize=8)
        if "log" in title:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(shown)), [textwrap.fill(row["backend"].split(" (")[0], 11) for row in shown],
                      fontsize=8)
    for ax in axes.flat:
        if not ax.has_data():
            ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()}"


def update_readme(markdown: str) -> None:
    readme = ROOT / "docs" / "benchmarks.md"
    text = readme.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        readme.write_text(head + start + "\n" + markdown + "\n" + end + rest.split(end, 1)[1])


GROWTH_STEPS = [(1_000, 100), (10_000, 1_000), (100_000, 10_000)]


def prefill(path: Path, entities_count: int, finished: int) -> None:
    """Write entities and finished orchestrations (with histories) straight into a store file."""
    from durabletask.internal import orchestrator_service_pb2 as pb

    from dts_emulator import events as ev
    from dts_emulator.store import EntityRow, InstanceRow, Store

    store = Store(path)
    now = time.time()
    history = [ev.event(orchestratorStarted=pb.OrchestratorStartedEvent(), at=now).SerializeToString()] * 10
    with store.transaction():
        for i in range(entities_count):
            store.put_entity(EntityRow("default", f"@counter@fill-{i}", str(i), now, None, None))
        for i in range(finished):
            store.put_instance(InstanceRow("default", f"fill-{i}", "e", "counter_workflow", None,
                                           pb.ORCHESTRATION_STATUS_COMPLETED, '"x"', '"y"', None, None, now, now,
                                           now, None, None, None, None, {}))
            store.append_history("default", f"fill-{i}", history)
    store.close()


def growth(sizes: Sizes, output: Path) -> str:
    """How signals/s, call latency and memory change as the store grows."""
    rows = ["| entities in store | finished orchestrations | signals/s | call p50 ms | call p99 ms | RSS MB |",
            "|---|---|---|---|---|---|"]
    for entities_count, finished in GROWTH_STEPS:
        with tempfile.TemporaryDirectory() as data_dir:
            path = Path(data_dir) / "growth.db"
            prefill(path, entities_count, finished)
            emulator = [sys.executable, "-m", "dts_emulator", "--port", "{port}", "--dashboard-port", "0",
                        "--log-level", "info", "--data", str(path)]
            backend = Backend("sqlite", "emulator (SQLite, default)", emulator, "gRPC endpoint")
            with served(backend) as (address, client):
                signals = workload_signals(
                    lambda address=address: dt_client.TaskHubGrpcClient(host_address=address, logger=QUIET), sizes)
                latency = workload_latency(client, sizes.calls)
                rss = rss_mb(backend.process.pid)
        rows.append(f"| {entities_count:,} | {finished:,} | {signals:,.0f} | {latency['call p50 ms']:.2f} | "
                    f"{latency['call p99 ms']:.2f} | {rss:.0f} |")
        print(rows[-1], flush=True)
    return "\n".join(rows)


QUICK = dict(orchestrations=10, signals=80, threads=4, entities=4, calls=10, waiting_clients=100,
             new_orchestrations=5, orchestration_cap_s=2.0, frozen_orchestrations=10, frozen_signals=40,
             frozen_entities=2, frozen_cap_s=3.0, liveness_timeout_s=1.0, soak_s=8.0, soak_samples=4)
WORKLOADS = ("throughput", "waiting", "frozen", "soak")
# The soak fails the run when the -wal file passes this: the emulator keeps it near 4 MiB.
SOAK_WAL_BOUND_MIB = 8.0


def _names(choices: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        if not names or (unknown := set(names) - set(choices)):
            raise argparse.ArgumentTypeError(f"{', '.join(sorted(unknown)) or 'nothing'} given; choose from "
                                             f"{', '.join(choices)} (comma-separated)")
        return names
    return parse


def _seconds_or_default(text: str) -> float | str:
    if text == "default":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number of seconds nor 'default'") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes and short caps, for a smoke test")
    p.add_argument("--output", type=Path, default=RESULTS, help="where results go (default: bench/results)")
    p.add_argument("--no-readme", action="store_true", help="do not update docs/benchmarks.md")
    p.add_argument("--no-growth", action="store_true", help="skip the store-growth runs")
    p.add_argument("--rounds", type=int, default=5,
                   help="rounds over all backends, interleaved; each figure is the median "
                        "(default: 5, as a shared machine's speed drifts)")
    p.add_argument("--workloads", type=_names(WORKLOADS), default=list(WORKLOADS),
                   help=f"which to run, comma-separated (default: {','.join(WORKLOADS)})")
    keys = tuple(b.key for b in backends(Path()))
    p.add_argument("--backends", type=_names(keys), default=list(keys),
                   help=f"which to measure, comma-separated (default: {','.join(keys)}; "
                        "the pressure workloads skip writes-skipped)")
    for name, kind, what in [("waiting-clients", int, "W, clients waiting"),
                             ("new-orchestrations", int, "M, orchestrations timed while they wait"),
                             ("orchestration-cap", float, "seconds a new orchestration may take before it "
                                                          "counts as timed out"),
                             ("frozen-cap", float, "seconds the frozen worker's work may take to be done elsewhere"),
                             ("soak-seconds", float, "how long the soak runs (default: 180)"),
                             ("liveness-timeout", _seconds_or_default,
                              f"passed to the emulator as {LIVENESS_FLAG} where it has that flag (default: 5; "
                              "'default': the emulator's own)")]:
        p.add_argument(f"--{name}", type=kind, help=what)
    return p


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Sizes]:
    args = build_parser().parse_args(argv)
    sizes = Sizes(**QUICK) if args.quick else Sizes()
    for flag, attribute in [("waiting_clients", "waiting_clients"), ("new_orchestrations", "new_orchestrations"),
                            ("orchestration_cap", "orchestration_cap_s"), ("frozen_cap", "frozen_cap_s"),
                            ("soak_seconds", "soak_s"),
                            ("liveness_timeout", "liveness_timeout_s")]:
        if getattr(args, flag) is not None:
            setattr(sizes, attribute, None if getattr(args, flag) == "default" else getattr(args, flag))
    return args, sizes


def run_throughput(args: argparse.Namespace, sizes: Sizes) -> tuple[list[Result], str]:
    rounds = 1 if args.quick else max(1, args.rounds)
    runs: dict[str, list[Result]] = {}
    # Backends take turns, round after round, so that a slow spell of the machine
    # does not land on one backend only; the medians are reported.
    for n in range(rounds):
        with tempfile.TemporaryDirectory() as data_dir:
            for backend in backends(Path(data_dir)):
                if backend.key in args.backends:
                    print(f"round {n + 1}/{rounds}: measuring {backend.name} ...", flush=True)
                    runs.setdefault(backend.name, []).append(measure(backend, sizes))
    results = [Result(name, {key: statistics.median(r.figures[key] for r in rs) for key in rs[0].figures})
               for name, rs in runs.items()]
    body = table(results)
    if rounds > 1 and BASELINE in runs:
        body += f"\n\nPer-round ratios (each round against the {BASELINE} of the same round), lowest-highest:\n\n"
        body += spread(runs)
    markdown = (f" with `make bench` (N={sizes.orchestrations} orchestrations, "
                f"S={sizes.signals} signals from T={sizes.threads} threads over K={sizes.entities} entities, "
                f"{sizes.calls} sequential calls; medians of {rounds} interleaved rounds)."
                + (f" Ratios are against the {BASELINE}." if BASELINE in runs else "") + f"\n\n{body}\n")
    if not args.no_growth and not args.quick:
        print("measuring growth ...", flush=True)
        markdown += ("\nAs the store grows (persistent emulator, store pre-filled; same signal and call "
                     f"workloads):\n\n{growth(sizes, args.output)}\n")
    return results, markdown


def run_pressure(args: argparse.Namespace, sizes: Sizes) -> tuple[list[dict], str]:
    liveness = emulator_has_flag(LIVENESS_FLAG)
    rows = []
    with tempfile.TemporaryDirectory() as data_dir:
        for backend in backends(Path(data_dir)):
            if backend.key not in args.backends or backend.key not in PRESSURE_BACKENDS:
                continue
            row = {"backend": backend.name}
            if "waiting" in args.workloads:
                print(f"measuring {backend.name} with {sizes.waiting_clients} waiting clients ...", flush=True)
                row.update(measure_waiting(backend, sizes))
            if "frozen" in args.workloads:
                print(f"measuring {backend.name} with a frozen worker ...", flush=True)
                row.update(measure_frozen(backend, sizes, liveness))
            rows.append(row)
    setting = (f"this emulator has no {LIVENESS_FLAG} flag, so it runs without one" if not liveness else
               f"the emulator runs with its default {LIVENESS_FLAG}" if sizes.liveness_timeout_s is None else
               f"the emulator runs with {LIVENESS_FLAG} {sizes.liveness_timeout_s:g}")
    markdown = (f"Under pressure (one run per backend; the log-off emulator and the writes-skipped device are left "
                f"out, as neither workload is about the log or persistence): {sizes.waiting_clients:,} clients wait "
                f"on unfinished instances while "
                f"{sizes.new_orchestrations} new counter_workflow orchestrations run one after another (each may "
                f"take {sizes.orchestration_cap_s:g} s; the first timeout ends the sequence); a worker freezes "
                f"holding work amid {sizes.frozen_orchestrations} orchestrations and {sizes.frozen_signals} "
                f"signals over {sizes.frozen_entities} entities (cap {sizes.frozen_cap_s:g} s; {setting}).\n\n"
                f"{pressure_table(rows, sizes)}\n")
    return rows, markdown


def run_soak(sizes: Sizes) -> tuple[dict, str]:
    with tempfile.TemporaryDirectory() as data_dir:
        data = Path(data_dir) / "soak.db"
        backend = backends(Path(data_dir))[0]
        backend = dataclasses.replace(backend, args=[*backend.args[:-1], str(data)])
        print(f"soaking {backend.name} for {sizes.soak_s:g} s ...", flush=True)
        with served(backend) as (address, _):
            result = soak.soak(data, backend.process.pid,
                               lambda: dt_client.TaskHubGrpcClient(host_address=address, logger=QUIET),
                               sizes.soak_s, sizes.soak_s / max(sizes.soak_samples, int(sizes.soak_s // 60)))
    widest = max(s.wal_mib for s in result.samples)
    markdown = (f"A soak: the persistent emulator under steady load for {sizes.soak_s:g} s on one data file (4 "
                f"threads each repeating one call_entity orchestration, then purging it, and a steady trickle of "
                f"signals). WAL bytes per call (an orchestration that calls one entity, and its purge): "
                f"{result.wal_bytes_per_operation / 1024:.1f} KiB with {result.page_size}-byte pages.\n\n"
                f"{result.table()}\n")
    row = {"samples": [dataclasses.asdict(s) for s in result.samples], "page size": result.page_size,
           "WAL bytes per call": result.wal_bytes_per_operation, "largest WAL MiB": widest}
    if widest > SOAK_WAL_BOUND_MIB:
        raise WrongResult(f"the -wal file reached {widest:.1f} MiB under steady load (bound {SOAK_WAL_BOUND_MIB:g})")
    return row, markdown


def main(argv: list[str] | None = None) -> int:
    args, sizes = parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    results, rows, sections = [], [], []
    if "throughput" in args.workloads:
        results, markdown = run_throughput(args, sizes)
        sections.append(markdown)
    if {"waiting", "frozen"} & set(args.workloads):
        rows, markdown = run_pressure(args, sizes)
        sections.append(markdown)
    soaked = {}
    if "soak" in args.workloads and "sqlite" in args.backends:
        soaked, markdown = run_soak(sizes)
        sections.append(markdown)
    when = time.strftime("%Y-%m-%d")
    markdown = f"Measured {when} on {machine()}" + ("" if results else ".\n\n") + "\n".join(sections)
    (args.output / "latest.md").write_text(markdown)
    (args.output / "latest.json").write_text(json.dumps(
        {"date": when, "machine": machine(), "sizes": vars(sizes), "workloads": args.workloads,
         "results": [{"backend": r.backend, **r.figures} for r in results], "pressure": rows,
         "soak": soaked}, indent=2))
    chart(results, rows, args.output / "chart.png")
    print(markdown)
    if not args.no_readme and not args.quick:
        update_readme(markdown)
    wrong = [f"{row['backend']}: {row['wrong after thaw']}" for row in rows if row.get("wrong after thaw")]
    if wrong:
        print("wrong answers after the frozen worker was thawed:\n" + "\n".join(wrong), file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
