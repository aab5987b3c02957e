"""A/B of two emulator checkouts: is a change faster, on a machine whose speed drifts?

usage: python bench/compare.py A_DIR B_DIR [--rounds 10] [--workload orchestrations] [--size 200]

A_DIR and B_DIR are checkouts of this project (``git worktree add /tmp/a <rev>`` gives one);
each runs its own ``emulator`` package, with a fresh data file per round. The worker, the
client and the workload are this checkout's, the same for both.

On a shared machine the same code measures 4.2-5.6 ms of CPU per orchestration within an
hour, more than most changes are worth. So the two run in turns, A B then B A, each round
on a fresh emulator process, and the verdict is the median of the per-round ratios B/A:
neighbours in time share the machine's speed of the moment. Its lowest-highest range says
how much one round can be trusted. CPU time comes in clock ticks of 10 ms: at the default
size a round uses about 100 of them, so one round resolves about 1%.

Dependencies come from this venv for both sides: a change of requirements is not compared.
"""

from __future__ import annotations

import argparse
import signal
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


# The package's name in a checkout: ``dts_emulator`` now, ``emulator`` before it was renamed, so that
# a checkout of either age can be side A.
PACKAGE_NAMES = ("dts_emulator", "emulator")


def package_name(path: Path) -> str | None:
    return next((name for name in PACKAGE_NAMES if (path / name / "cli.py").is_file()), None)


def checkout(text: str) -> Path:
    path = Path(text).resolve()
    if package_name(path) is None:
        raise argparse.ArgumentTypeError(f"{path} is not a checkout of this project (no dts_emulator/cli.py in it)")
    return path


def package_run_from(path: Path) -> Path:
    """The package that ``python -m <its name>`` imports when started in ``path``."""
    name = package_name(path)
    found = subprocess.run([sys.executable, "-c", f"import {name}; print({name}.__file__)"], cwd=path,
                           capture_output=True, text=True, timeout=60)
    if found.returncode != 0:
        raise RuntimeError(f"python -m {name} cannot import its package in {path}: {found.stderr.strip()[-500:]}")
    return Path(found.stdout.strip()).resolve().parent


def signal_sizes(size: int) -> run.Sizes:
    return run.Sizes(signals=size, threads=min(8, size))


def operations(workload: str, size: int) -> int:
    """How many operations a round measures."""
    return run.signals_sent(signal_sizes(size)) if workload == "signals" else size


def measure_once(side: Side, workload: str, size: int, data: Path) -> None:
    """One round of one side: a fresh emulator from its checkout, the workload, its CPU."""
    backend = run.Backend(side.name, side.name, [sys.executable, "-m", package_name(side.checkout), "--port", "{port}",
                                                 "--dashboard-port", "0", "--data", str(data)], "gRPC endpoint",
                          cwd=side.checkout)
    with run.served(backend) as (address, client):
        run.workload_orchestrations(client, 10)  # warm-up: connections, caches, the first commits
        pid = backend.process.pid
        cpu = cpu_seconds(pid)
        n = operations(workload, size)
        if workload == "orchestrations":
            side.figure.append(run.workload_orchestrations(client, n))
        elif workload == "signals":
            side.figure.append(run.workload_signals(
                lambda: dt_client.TaskHubGrpcClient(host_address=address, logger=run.QUIET), signal_sizes(size)))
        else:
            side.figure.append(run.workload_latency(client, n)["call p50 ms"])
        side.cpu_ms.append((cpu_seconds(pid) - cpu) * 1000 / n)


def verdict(name: str, better: str, a: list[float], b: list[float]) -> str:
    """The median of the per-round ratios B/A, over the rounds both sides finished."""
    pairs = list(zip(a, b, strict=False))  # a round that failed midway has one side only: left out
    r = [y / x for x, y in pairs if x > 0]
    if not pairs:
        return f"{name} B/A ({better} is better): no ratio (no round finished on both sides)"
    if not r:
        return f"{name} B/A ({better} is better): no ratio (A measured 0 in every round: make --size larger)"
    return (f"{name} B/A ({better} is better): median {statistics.median(r):.3f} "
            f"(rounds {min(r):.3f}-{max(r):.3f}, {len(r)} of {len(pairs)} rounds)")


def _stop_on_sigterm() -> None:
    """SIGTERM (a CI cancel, ``timeout``) ends the run like Ctrl-C: emulators stopped, data files removed."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


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
    for side in (a, b):
        try:
            package = package_run_from(side.checkout)
        except RuntimeError as exc:
            p.error(str(exc))
        if package != side.checkout / package_name(side.checkout):
            p.error(f"in {side.checkout}, python -m {package_name(side.checkout)} runs {package}, "
                    "not that checkout's package")
        print(f"{side.name} = {side.checkout} (runs {package})")
    _stop_on_sigterm()
    unit = "call p50 ms" if args.workload == "latency" else "per s"
    n = operations(args.workload, args.size)
    print(f"{args.workload}, {n} per round, {args.rounds} rounds", flush=True)
    failed = False
    with tempfile.TemporaryDirectory(prefix="compare-") as tmp:
        for i in range(args.rounds):
            for side in (a, b) if i % 2 == 0 else (b, a):
                started = time.perf_counter()
                try:
                    measure_once(side, args.workload, args.size, Path(tmp) / f"{side.name}-{i}.db")
                except Exception as exc:  # noqa: BLE001 - reported, and the rounds so far still give a verdict
                    print(f"round {i + 1}: {side.name} FAILED: {exc}", flush=True)
                    failed = True
                    break
                print(f"round {i + 1}: {side.name} {side.cpu_ms[-1]:.2f} ms CPU/op, {side.figure[-1]:,.1f} {unit} "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
            if failed:
                break
    for side in (a, b):
        if side.cpu_ms:
            print(f"{side.name}: median {statistics.median(side.cpu_ms):.2f} ms CPU/op, "
                  f"{statistics.median(side.figure):,.1f} {unit}")
    print(verdict("CPU per op", "lower", a.cpu_ms, b.cpu_ms))
    print(verdict(unit, "higher" if unit == "per s" else "lower", a.figure, b.figure))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
