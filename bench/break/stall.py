"""How long one read of a long history stalls every other call (the engine's loop is busy meanwhile).

Builds an instance with EVENTS history events of about 1 KB each, then measures the
latency of a small GetInstance probe while (a) StreamInstanceHistory and (b) the dashboard's
instance view read that history. usage: stall.py [EVENTS]
"""
import asyncio
import sys
import urllib.request

import grpc
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc
from google.protobuf import wrappers_pb2

sys.path.insert(0, ".")
sys.path.insert(0, "bench/break")
from probe import measure, started  # noqa: E402

from tests.helpers import InProcessEmulator, free_port  # noqa: E402

EVENTS = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
OPTS = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]


async def build(stub):
    await stub.StartInstance(pb.CreateInstanceRequest(instanceId="long", name="wf"))
    call = stub.GetWorkItems(pb.GetWorkItemsRequest())
    async for item in call:
        if item.HasField("orchestratorRequest"):
            break
    data = wrappers_pb2.StringValue(value='"' + "x" * 1000 + '"')
    actions = [pb.OrchestratorAction(id=i, sendEvent=pb.SendEventAction(
        instance=pb.OrchestrationInstance(instanceId="nowhere"), name="e", data=data)) for i in range(EVENTS)]
    await stub.CompleteOrchestratorTask(pb.OrchestratorResponse(
        instanceId="long", actions=actions, completionToken=item.completionToken))
    call.cancel()


def main():
    dash = free_port()
    with started(InProcessEmulator, dashboard_port=dash) as (emu, _):
        async def run():
            async with grpc.aio.insecure_channel(emu.address, options=OPTS) as ch:
                stub = pb_grpc.TaskHubSidecarServiceStub(ch)
                await build(stub)
                loop = asyncio.get_running_loop()
                await measure(stub, "long", "idle", lambda: asyncio.sleep(0.5))

                async def history():
                    n = 0
                    async for chunk in stub.StreamInstanceHistory(
                            pb.StreamInstanceHistoryRequest(instanceId="long")):
                        n += len(chunk.events)
                    assert n > EVENTS, n
                await measure(stub, "long", f"StreamInstanceHistory ({EVENTS} events)", history)

                def get():
                    with urllib.request.urlopen(f"{emu.dashboard}/api/hubs/default/instances/long") as r:
                        return len(r.read())

                async def dashboard():
                    size = await loop.run_in_executor(None, get)
                    assert size > EVENTS * 1000, size

                await measure(stub, "long", "dashboard instance view", dashboard)
        asyncio.run(run())


main()
