"""How long one big QueryInstances page stalls other calls (rows are turned into protobuf on the loop).

usage: stall_query.py INSTANCES INPUT_BYTES [memory]
"""
import asyncio
import sys

import grpc
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc
from google.protobuf import wrappers_pb2

sys.path.insert(0, ".")
sys.path.insert(0, "bench/break")
from probe import measure, started  # noqa: E402

from tests.helpers import InProcessEmulator  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
SIZE = int(sys.argv[2]) if len(sys.argv) > 2 else 4000
MEMORY = len(sys.argv) > 3 and sys.argv[3] == "memory"
OPTS = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]


def main():
    with started(InProcessEmulator, memory=MEMORY) as (emu, _):
        async def run():
            async with grpc.aio.insecure_channel(emu.address, options=OPTS) as ch:
                stub = pb_grpc.TaskHubSidecarServiceStub(ch)
                data = wrappers_pb2.StringValue(value='"' + "x" * SIZE + '"')
                sem = asyncio.Semaphore(32)

                async def start(i):
                    async with sem:
                        await stub.StartInstance(pb.CreateInstanceRequest(instanceId=f"q{i}", name="wf",
                                                                          input=data))
                await asyncio.gather(*(start(i) for i in range(N)))

                async def query():
                    try:
                        r = await stub.QueryInstances(pb.QueryInstancesRequest(query=pb.InstanceQuery(
                            maxInstanceCount=1_000_000, fetchInputsAndOutputs=True)))
                        return f"{len(r.orchestrationState)} rows, {r.ByteSize() >> 20} MB"
                    except grpc.aio.AioRpcError as exc:
                        return f"{exc.code().name}: {exc.details()[:80]}"
                await measure(stub, "q0", f"QueryInstances of {N} x {SIZE} B ({'memory' if MEMORY else 'file'})",
                              query)
        asyncio.run(run())


main()
