"""How long one large request (StartInstance with a 3.5 MB input, file store) stalls other calls.

The default size stays under the emulator's 4 MiB request limit.

usage: stall_big.py [MB] [COUNT]
"""
import asyncio
import statistics
import sys
import time

import grpc
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc
from google.protobuf import wrappers_pb2

sys.path.insert(0, ".")
sys.path.insert(0, "bench/break")
from probe import Probe, started  # noqa: E402

from tests.helpers import InProcessEmulator  # noqa: E402

MB = float(sys.argv[1]) if len(sys.argv) > 1 else 3.5
COUNT = int(sys.argv[2]) if len(sys.argv) > 2 else 5
OPTS = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]


def main():
    with started(InProcessEmulator) as (emu, _):
        async def run():
            async with grpc.aio.insecure_channel(emu.address, options=OPTS) as ch, \
                    grpc.aio.insecure_channel(emu.address) as probe_ch:
                stub, probe_stub = (pb_grpc.TaskHubSidecarServiceStub(c) for c in (ch, probe_ch))
                await stub.StartInstance(pb.CreateInstanceRequest(instanceId="small", name="wf"))
                data = wrappers_pb2.StringValue(value='"' + "x" * int(MB * 1e6) + '"')
                took = []
                async with Probe(probe_stub, "small") as probe:
                    for i in range(COUNT):
                        t = time.perf_counter()
                        await stub.StartInstance(pb.CreateInstanceRequest(instanceId=f"big{i}", name="wf",
                                                                          input=data))
                        took.append(time.perf_counter() - t)
                print(f"{COUNT} StartInstance of {MB} MB: each {statistics.median(took) * 1e3:.0f} ms; "
                      f"{probe.summary()}", flush=True)
        asyncio.run(run())


main()
