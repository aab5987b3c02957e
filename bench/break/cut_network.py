"""A worker whose network goes silent (no FIN, no RST): how long until its work goes elsewhere?

A TCP proxy of our own forwards a worker's connection and then stops forwarding (sockets kept
open). usage: cut_network.py [LIVENESS_SECONDS]
"""
import asyncio
import sys
import time

import grpc
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc
from google.protobuf import wrappers_pb2

sys.path.insert(0, ".")
sys.path.insert(0, "bench/break")
from probe import on_engine  # noqa: E402

from tests.helpers import InProcessEmulator  # noqa: E402

LIVENESS = float(sys.argv[1]) if len(sys.argv) > 1 else 4.0
ITEMS = int(sys.argv[2]) if len(sys.argv) > 2 else 1  # ready instances
SIZE = int(sys.argv[3]) if len(sys.argv) > 3 else 0  # input bytes each: large ones fill the TCP buffers
OPTS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]


class Proxy:
    def __init__(self, target_port: int):
        self.target_port, self.cut = target_port, False

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader, writer):
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(src, dst):
            while True:
                data = await src.read(65536)
                if not data:
                    return
                while self.cut:
                    await asyncio.sleep(3600)  # silence: nothing forwarded, nothing closed
                dst.write(data)
                await dst.drain()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)
        except asyncio.CancelledError:
            pass  # the script's end; Python 3.11's start_server would print a cancelled handler as an error
        finally:
            writer.close()
            up_writer.close()


def main():
    emu = InProcessEmulator(liveness_timeout=LIVENESS).start()
    try:
        async def run():
            proxy = Proxy(emu.port)
            port = await proxy.start()
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=OPTS) as far, \
                    grpc.aio.insecure_channel(emu.address, options=OPTS) as near:
                cut_stub = pb_grpc.TaskHubSidecarServiceStub(far)
                stub = pb_grpc.TaskHubSidecarServiceStub(near)
                data = wrappers_pb2.StringValue(value="x" * SIZE) if SIZE else None
                for i in range(ITEMS):
                    await stub.StartInstance(pb.CreateInstanceRequest(instanceId=f"w{i}", name="wf", input=data))
                victim = cut_stub.GetWorkItems(pb.GetWorkItemsRequest())
                item = await victim.read()
                assert item.HasField("orchestratorRequest")
                proxy.cut = True
                t0 = time.monotonic()
                held = await on_engine(emu, emu.backend.dispatch.leases_held)
                healthy = stub.GetWorkItems(pb.GetWorkItemsRequest())
                got = 0
                while got < ITEMS:
                    item = await healthy.read()
                    if item.HasField("orchestratorRequest"):
                        got += 1
                print(f"liveness timeout {LIVENESS} s, {ITEMS} x {SIZE} B items, the cut worker held {held} "
                      f"leases at the cut: all {ITEMS} reached another worker after "
                      f"{time.monotonic() - t0:.1f} s", flush=True)
                healthy.cancel()
                victim.cancel()
        asyncio.run(run())
    finally:
        emu.stop()


main()
