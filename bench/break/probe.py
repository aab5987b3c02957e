"""What the break scripts share: how slow a small call gets while other work runs on the emulator."""
import asyncio
import statistics
import time

from durabletask.internal import orchestrator_service_pb2 as pb


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
