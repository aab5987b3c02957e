"""A worker stream that never reads: how much work does it hoard, and is it released when it goes away?"""
import asyncio
import sys

import grpc
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

sys.path.insert(0, ".")
sys.path.insert(0, "bench/break")
from probe import on_engine  # noqa: E402

from tests.helpers import InProcessEmulator  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000



def main():
    emu = InProcessEmulator().start()
    try:
        async def run():
            ch = grpc.aio.insecure_channel(emu.address)
            stub = pb_grpc.TaskHubSidecarServiceStub(ch)
            for i in range(N):
                await stub.StartInstance(pb.CreateInstanceRequest(instanceId=f"i{i}", name="wf", input=None))
            ch2 = grpc.aio.insecure_channel(emu.address)
            stub2 = pb_grpc.TaskHubSidecarServiceStub(ch2)
            call = stub2.GetWorkItems(pb.GetWorkItemsRequest())  # never read
            await asyncio.sleep(3)
            held = await on_engine(emu, emu.backend.dispatch.leases_held)
            print(f"never-reading stream holds {held} of {N} work items", flush=True)
            # a healthy worker now
            ch3 = grpc.aio.insecure_channel(emu.address)
            stub3 = pb_grpc.TaskHubSidecarServiceStub(ch3)
            healthy = stub3.GetWorkItems(pb.GetWorkItemsRequest())
            got = 0
            async def read():
                nonlocal got
                async for item in healthy:
                    if item.HasField("orchestratorRequest"):
                        got += 1
            reader = asyncio.ensure_future(read())
            await asyncio.sleep(3)
            print(f"healthy stream got {got} in 3 s", flush=True)
            call.cancel()
            await asyncio.sleep(2)
            held = await on_engine(emu, emu.backend.dispatch.leases_held)
            print(f"after cancelling the never-reading stream: {held} leases held; healthy got {got}", flush=True)
            await ch2.close()
            await asyncio.sleep(2)
            held = await on_engine(emu, emu.backend.dispatch.leases_held)
            print(f"after closing its channel: {held} leases held; healthy got {got}", flush=True)
            reader.cancel()
            await ch3.close()
            await ch.close()
        asyncio.run(run())
    finally:
        emu.stop()


main()
