"""The emulator's RSS with N waiting clients and S idle worker streams (python -m emulator, data file).

usage: rss.py WAITERS STREAMS
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

WAITERS = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
STREAMS = int(sys.argv[2]) if len(sys.argv) > 2 else 200


def main():
    with started(Emulator) as (emu, _):
        pid = emu.process.proc.pid

        async def run():
            channels = [grpc.aio.insecure_channel(emu.address) for _ in range(8)]
            stubs = [pb_grpc.TaskHubSidecarServiceStub(c) for c in channels]
            await stubs[0].StartInstance(pb.CreateInstanceRequest(instanceId="parked", name="never"))
            base = rss_mb(pid)
            waits = [stubs[i % 8].WaitForInstanceCompletion(pb.GetInstanceRequest(instanceId="parked"))
                     for i in range(WAITERS)]
            streams = [stubs[i % 8].GetWorkItems(pb.GetWorkItemsRequest(
                workItemFilters=pb.WorkItemFilters(orchestrations=[pb.OrchestrationFilter(name="x")])))
                for i in range(STREAMS)]
            await asyncio.sleep(6)
            print(f"emulator RSS: {base:.0f} MB idle, {rss_mb(pid):.0f} MB with {WAITERS} waiters and "
                  f"{STREAMS} idle worker streams", flush=True)
            for c in waits + streams:
                c.cancel()
            for c in channels:
                await c.close()
        asyncio.run(run())


main()
