"""How long one big QueryInstances page stalls other calls (rows are turned into protobuf on the loop).

usage: stall_query.py INSTANCES INPUT_BYTES [memory]
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

N = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
SIZE = int(sys.argv[2]) if len(sys.argv) > 2 else 4000
MEMORY = len(sys.argv) > 3 and sys.argv[3] == "memory"
OPTS = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]


async def measure(stub, label, work):
    lat = []
    done = False

    async def probe():
        while not done:
            t = time.perf_counter()
            await stub.GetInstance(pb.GetInstanceRequest(instanceId="q0"))
            lat.append(time.perf_counter() - t)
            await asyncio.sleep(0.002)

    p = asyncio.ensure_future(probe())
    await asyncio.sleep(0.3)
    t = time.perf_counter()
    outcome = await work()
    took = time.perf_counter() - t
    await asyncio.sleep(0.1)
    done = True
    await p
    print(f"{label}: {outcome}, took {took * 1e3:.0f} ms; concurrent GetInstance p50 "
          f"{statistics.median(lat) * 1e3:.1f} ms, max {max(lat) * 1e3:.0f} ms", flush=True)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        emu = InProcessEmulator(None if MEMORY else Path(tmp) / "e.db").start()
        try:
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
                    await measure(stub, f"QueryInstances of {N} x {SIZE} B ({'memory' if MEMORY else 'file'})",
                                  query)
            asyncio.run(run())
        finally:
            emu.stop()


main()
