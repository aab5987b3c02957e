"""How long one large request (StartInstance with a 15 MB input, file store) stalls other calls.

usage: stall_big.py [MB] [COUNT]
"""
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc
from google.protobuf import wrappers_pb2

sys.path.insert(0, ".")
from tests.helpers import InProcessEmulator  # noqa: E402

MB = float(sys.argv[1]) if len(sys.argv) > 1 else 15
COUNT = int(sys.argv[2]) if len(sys.argv) > 2 else 5
OPTS = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]


def main():
    with tempfile.TemporaryDirectory() as tmp:
        emu = InProcessEmulator(Path(tmp) / "e.db").start()
        try:
            async def run():
                async with grpc.aio.insecure_channel(emu.address, options=OPTS) as ch, \
                        grpc.aio.insecure_channel(emu.address) as probe_ch:
                    stub, probe_stub = (pb_grpc.TaskHubSidecarServiceStub(c) for c in (ch, probe_ch))
                    await stub.StartInstance(pb.CreateInstanceRequest(instanceId="small", name="wf"))
                    lat, done = [], False

                    async def probe():
                        while not done:
                            t = time.perf_counter()
                            await probe_stub.GetInstance(pb.GetInstanceRequest(instanceId="small"))
                            lat.append(time.perf_counter() - t)
                            await asyncio.sleep(0.002)

                    p = asyncio.ensure_future(probe())
                    data = wrappers_pb2.StringValue(value='"' + "x" * int(MB * 1e6) + '"')
                    took = []
                    for i in range(COUNT):
                        t = time.perf_counter()
                        await stub.StartInstance(pb.CreateInstanceRequest(instanceId=f"big{i}", name="wf",
                                                                          input=data))
                        took.append(time.perf_counter() - t)
                    done = True
                    await p
                    print(f"{COUNT} StartInstance of {MB} MB: each {statistics.median(took) * 1e3:.0f} ms; concurrent "
                          f"GetInstance p50 {statistics.median(lat) * 1e3:.1f} ms, max {max(lat) * 1e3:.0f} ms",
                          flush=True)
            asyncio.run(run())
        finally:
            emu.stop()


main()
