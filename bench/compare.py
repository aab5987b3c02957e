"""A/B of two emulator checkouts: is a change faster, on a machine whose speed drifts?

usage: python bench/compare.py A_DIR B_DIR [--rounds 10] [--workload orchestrations] [--size 200]

A_DIR and B_DIR are checkouts of this project (``git worktree add /tmp/a <rev>`` gives one);
each runs its own ``emulator`` package, with a fresh data file per round. The worker, the
client and the workload are this checkout's, the same for both.

On a shared machine the same code measures 4.2-5.6 ms of CPU per orchestration within an
hour, more than most changes are worth. So the two run in turns, A B then B A, each round
on a fresh emulator process, and the verdict is the median of the per-round ratios B/A:
neighbours in time share the machine's speed of the moment. Its lowest-highest range says
how much one round can be trusted.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from durabletask import client as dt_client  # noqa: E402

from bench import run  # noqa: E402
from bench.common import cpu_seconds  # noqa: E402

WORKLOADS = ("orchestrations", "signals", "latency")


@dataclass
class Side:
    name: str
    checkout: Path
    cpu_ms: list[float] = field(default_factory=list)  # backend CPU per operation, one per round
    figure: list[float] = field(default_factory=list)  # operations/s, or call p50 ms for latency


def checkout(text: str) -> Path:
    path = Path(text).resolve()
    if not (path / "emulator" / "__main__.py").is_file():
        raise argparse.ArgumentTypeError(f"{path} is not a checkout of this project (no emulator/__main__.py in it)")
    return path


def measure_once(side: Side, workload: str, size: int, data: Path) -> None:
    """One round of one side: a fresh emulator from its checkout, the workload, its CPU."""
    backend = run.Backend(side.name, side.name, [sys.executable, "-m", "emulator", "--port", "{port}",
                                             "--dashboard-port", "0", "--data", str(data)], "gRPC endpoint",
                      cwd=side.checkout)
    address = backend.start()
    worker = subprocess.Popen([sys.executable, "bench/bench_worker.py", address], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        run.wait_for_line(worker, "bench worker ready")
        client = dt_client.TaskHubGrpcClient(host_address=address, logger=run.QUIET)
        run.workload_orchestrations(client, 10)  # warm-up: connections, caches, the first commits
        pid = backend.process.pid
        cpu = cpu_seconds(pid)
        if workload == "orchestrations":
            side.figure.append(run.workload_orchestrations(client, size))
        elif workload == "signals":
            sizes = run.Sizes(signals=size, threads=min(8, size))
            side.figure.append(run.workload_signals(
                lambda: dt_client.TaskHubGrpcClient(host_address=address, logger=run.QUIET), sizes))
        else:
            side.figure.append(run.workload_latency(client, size)["call p50 ms"])
        side.cpu_ms.append((cpu_seconds(pid) - cpu) * 1000 / size)
        client.close()
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        backend.stop()


def ratios(a: list[float], b: list[float]) -> list[float]:
    return [y / x for x, y in zip(a, b, strict=True) if x > 0]


def verdict(name: str, r: list[float]) -> str:
    if not r:
        return f"{name} B/A: no ratio (A measured 0 in every round: make --size larger)"
    return f"{name} B/A: median {statistics.median(r):.3f} (rounds {min(r):.3f}-{max(r):.3f})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", type=checkout, help="checkout A (the reference)")
    p.add_argument("b", type=checkout, help="checkout B (the change)")
    p.add_argument("--rounds", type=int, default=10, help="rounds of A and B each (default 10)")
    p.add_argument("--workload", choices=WORKLOADS, default="orchestrations")
    p.add_argument("--size", type=int, default=200,
                   help="orchestrations, signals or sequential calls per round (default 200)")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.size < 1:
        p.error("--rounds and --size must be at least 1")
    a, b = Side("A", args.a), Side("B", args.b)
    unit = "call p50 ms" if args.workload == "latency" else "per s"
    print(f"A = {a.checkout}\nB = {b.checkout}\n{args.workload}, {args.size} per round, {args.rounds} rounds",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="compare-") as tmp:
        for i in range(args.rounds):
            for side in (a, b) if i % 2 == 0 else (b, a):
                started = time.perf_counter()
                measure_once(side, args.workload, args.size, Path(tmp) / f"{side.name}-{i}.db")
                print(f"round {i + 1}: {side.name} {side.cpu_ms[-1]:.2f} ms CPU/op, {side.figure[-1]:,.1f} {unit} "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
    for side in (a, b):
        print(f"{side.name}: median {statistics.median(side.cpu_ms):.2f} ms CPU/op, "
              f"{statistics.median(side.figure):,.1f} {unit}")
    print(verdict("CPU per op", ratios(a.cpu_ms, b.cpu_ms)))
    print(verdict(unit, ratios(a.figure, b.figure)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
