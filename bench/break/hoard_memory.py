"""A worker stream that never reads, against instances with large inputs: does the server buffer without bound?"""
import asyncio
import os
import sys

import grpc
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc
from google.protobuf import wrappers_pb2

sys.path.insert(0, ".")
sys.path.insert(0, "bench/break")
from probe import on_engine  # noqa: E402

from bench.common import rss_mb  # noqa: E402
from tests.helpers import InProcessEmulator  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200
SIZE = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000


def main():
    emu = InProcessEmulator().start()

    try:
        async def run():
            ch = grpc.aio.insecure_channel(emu.address, options=[("grpc.max_send_message_length", 32 << 20)])
            stub = pb_grpc.TaskHubSidecarServiceStub(ch)
            big = '"' + "x" * SIZE + '"'
            before = rss_mb(os.getpid())
            for i in range(N):
                await stub.StartInstance(pb.CreateInstanceRequest(instanceId=f"i{i}", name="wf",
                                                                  input=wrappers_pb2.StringValue(value=big)))
            after_start = rss_mb(os.getpid())
            ch2 = grpc.aio.insecure_channel(emu.address, options=[("grpc.max_receive_message_length", 32 << 20)])
            call = pb_grpc.TaskHubSidecarServiceStub(ch2).GetWorkItems(pb.GetWorkItemsRequest())
            await call.initial_metadata()
            await asyncio.sleep(5)
            n = await on_engine(emu, emu.backend.dispatch.leases_held)
            print(f"process RSS: {before:.0f} MB before, {after_start:.0f} MB after {N} x {SIZE} B starts, "
                  f"{rss_mb(os.getpid()):.0f} MB with a never-reading stream holding {n} leases", flush=True)
            call.cancel()
            await ch2.close()
            await ch.close()
        asyncio.run(run())
    finally:
        emu.stop()


main()
