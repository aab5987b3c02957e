"""What the break scripts share: an emulator on a throwaway data file, a look at its engine from the
script's own loop, and how slow a small call gets while other work runs on the emulator."""
import asyncio
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from durabletask.internal import orchestrator_service_pb2 as pb


@contextmanager
def started(factory, memory: bool = False, **options) -> Iterator[tuple[object, Path]]:
    """``factory`` (an emulator class of ``tests.helpers``) started on a data file in a temporary
    folder (in memory with ``memory``), stopped for sure; yields it and the folder."""
    with tempfile.TemporaryDirectory() as tmp:
        emu = factory(None if memory else Path(tmp) / "e.db", **options).start()
        try:
            yield emu, Path(tmp)
        finally:
            emu.stop()


async def on_engine(emu, fn):
    """``fn()`` run on an in-process emulator's loop, awaited without blocking the script's loop."""
    return await asyncio.to_thread(emu.on_loop, fn)


class Probe:
    """``async with Probe(stub, instance_id) as probe:`` sends GetInstance every ``interval`` until the block ends."""

    def __init__(self, stub, instance_id: str, interval: float = 0.002):
        self.stub, self.instance_id, self.interval = stub, instance_id, interval
        self.latencies: list[float] = []
        self._done = False

    async def _run(self) -> None:
        while not self._done:
            t = time.perf_counter()
            await self.stub.GetInstance(pb.GetInstanceRequest(instanceId=self.instance_id))
            self.latencies.append(time.perf_counter() - t)
            await asyncio.sleep(self.interval)

    async def __aenter__(self) -> "Probe":
        self._task = asyncio.ensure_future(self._run())
        return self

    async def __aexit__(self, *exc) -> None:
        self._done = True
        await self._task

    def summary(self) -> str:
        lat = self.latencies
        return f"concurrent GetInstance p50 {statistics.median(lat) * 1e3:.1f} ms, max {max(lat) * 1e3:.0f} ms"


async def measure(stub, instance_id: str, label: str, work) -> None:
    """Print how long ``work()`` took and how it stalled a concurrent probe (with a quiet moment either side)."""
    async with Probe(stub, instance_id) as probe:
        await asyncio.sleep(0.3)
        t = time.perf_counter()
        outcome = await work()
        took = time.perf_counter() - t
        await asyncio.sleep(0.1)
    prefix = f"{outcome}, " if outcome is not None else ""
    print(f"{label}: {prefix}took {took * 1e3:.0f} ms; {probe.summary()}", flush=True)
