"""Idle worker streams that serve other names: what each new work item costs the engine's loop.

Every new work item wakes every idle stream of its hub (dispatch.wake_hub), and each woken
stream scans the whole ready queue through its filters (Feeder.take -> Dispatcher.take).
usage: herd.py STREAMS BACKLOG STARTS
"""
import asyncio
import os
import statistics
import sys
import time

import grpc
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

sys.path.insert(0, ".")
sys.path.insert(0, "bench/break")
from probe import Probe  # noqa: E402

from tests.helpers import InProcessEmulator  # noqa: E402

MODE = os.environ.get("MODE", "filtered")
S, B, K = (int(a) for a in (sys.argv[1:4] if len(sys.argv) > 3 else ("200", "2000", "200")))


def main():
    emu = InProcessEmulator().start()
    try:
        async def run():
            ch = grpc.aio.insecure_channel(emu.address)
            stub = pb_grpc.TaskHubSidecarServiceStub(ch)
            for i in range(B):
                await stub.StartInstance(pb.CreateInstanceRequest(instanceId=f"backlog{i}", name="unserved"))
            # S streams that serve only an orchestration called "other": idle, but woken by every new item
            if MODE == "full":  # streams at their limit (holding one item each): woken, but no scan
                for i in range(S):
                    await stub.StartInstance(pb.CreateInstanceRequest(instanceId=f"held{i}", name="unserved"))
                calls = [stub.GetWorkItems(pb.GetWorkItemsRequest(maxConcurrentOrchestrationWorkItems=1,
                                                                  maxConcurrentActivityWorkItems=1,
                                                                  maxConcurrentEntityWorkItems=1))
                         for _ in range(S)]
                for c in calls:
                    item = await c.read()
                    assert item.HasField("orchestratorRequest"), item
            else:
                filters = pb.WorkItemFilters(orchestrations=[pb.OrchestrationFilter(name="other")])
                calls = [stub.GetWorkItems(pb.GetWorkItemsRequest(workItemFilters=filters)) for _ in range(S)]
                for c in calls:
                    await c.initial_metadata()
            await asyncio.sleep(1)
            async with Probe(stub, "backlog0", interval=0.01) as probe:
                t0 = time.perf_counter()
                lat = []
                for i in range(K):
                    t = time.perf_counter()
                    await stub.StartInstance(pb.CreateInstanceRequest(instanceId=f"new{i}", name="unserved"))
                    lat.append(time.perf_counter() - t)
                elapsed = time.perf_counter() - t0
            print(f"{MODE} streams={S} backlog={B}: {K} StartInstance in {elapsed:.2f} s ({K / elapsed:.0f}/s), "
                  f"StartInstance p50 {statistics.median(lat) * 1e3:.1f} ms max {max(lat) * 1e3:.1f} ms; "
                  f"{probe.summary()}", flush=True)
            for c in calls:
                c.cancel()
            await ch.close()
        asyncio.run(run())
    finally:
        emu.stop()


main()
