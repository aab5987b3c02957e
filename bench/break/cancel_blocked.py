"""A worker stream cancelled while the server is blocked sending to it (flow control): are its leases freed?

usage: cancel_blocked.py [ROUNDS]
"""
import asyncio
import sys

import grpc
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc
from google.protobuf import wrappers_pb2

sys.path.insert(0, ".")
from tests.helpers import InProcessEmulator  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
OPTS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]


def main():
    emu = InProcessEmulator().start()
    on_loop = emu.on_loop

    try:
        async def run():
            async with grpc.aio.insecure_channel(emu.address, options=OPTS) as ch:
                stub = pb_grpc.TaskHubSidecarServiceStub(ch)
                data = wrappers_pb2.StringValue(value="x" * 1_000_000)
                for i in range(30):
                    await stub.StartInstance(pb.CreateInstanceRequest(instanceId=f"b{i}", name="wf", input=data))
                worst = 0
                for r in range(ROUNDS):
                    call = stub.GetWorkItems(pb.GetWorkItemsRequest())
                    await call.read()
                    await asyncio.sleep(0.3)  # the server fills the window and blocks in its send
                    held = on_loop(emu.backend.dispatch.leases_held)
                    call.cancel()
                    for _ in range(100):
                        await asyncio.sleep(0.02)
                        left = on_loop(emu.backend.dispatch.leases_held)
                        if left == 0:
                            break
                    worst = max(worst, left)
                    if left:
                        print(f"round {r}: {held} leases before the cancel, {left} still held 2 s after", flush=True)
                print(f"{ROUNDS} rounds: at most {worst} leases left behind by a cancelled, blocked stream",
                      flush=True)
        asyncio.run(run())
    finally:
        emu.stop()


main()
