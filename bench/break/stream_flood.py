"""Idle worker streams fill grpc's maximum_concurrent_rpcs: what happens to starts and completions?

Runs `python -m emulator --max-waiters W` (the RPC limit is W + 1,000 + 1,000), opens that many
idle GetWorkItems streams, then tries a StartInstance. Reports the emulator's RSS on the way.
usage: stream_flood.py [WAITERS]
"""
import asyncio
import sys

import grpc
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

sys.path.insert(0, ".")
sys.path.insert(0, "bench/break")
from probe import started  # noqa: E402

from bench.common import rss_mb  # noqa: E402
from tests.helpers import Emulator  # noqa: E402

W = int(sys.argv[1]) if len(sys.argv) > 1 else 10


def main():
    with started(Emulator, extra=("--max-waiters", str(W))) as (emu, _):
        pid = emu.process.proc.pid

        async def run():
            limit = W + 1_000 + 1_000
            channels = [grpc.aio.insecure_channel(emu.address) for _ in range(4)]
            stubs = [pb_grpc.TaskHubSidecarServiceStub(c) for c in channels]
            base = rss_mb(pid)
            calls = [stubs[i % 4].GetWorkItems(pb.GetWorkItemsRequest()) for i in range(limit)]
            await asyncio.sleep(5)
            print(f"emulator RSS {base:.0f} MB idle, {rss_mb(pid):.0f} MB with {limit} idle worker streams",
                  flush=True)
            try:
                await stubs[0].StartInstance(pb.CreateInstanceRequest(instanceId="x", name="wf"), timeout=10)
                print("StartInstance: OK")
            except grpc.aio.AioRpcError as exc:
                print(f"StartInstance: {exc.code().name} {exc.details()}")
            refused = [c for c in calls if c.done() and await c.code() != grpc.StatusCode.OK]
            print(f"streams refused: {len(refused)} of {limit}")
            for c in calls:
                c.cancel()
            for c in channels:
                await c.close()
        asyncio.run(run())


main()
