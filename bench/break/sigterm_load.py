"""SIGTERM under load: 1,000 waiters, worker streams, starts and signals in flight.

Measures the time from SIGTERM to exit, the exit code, and whether every acknowledged start
is there after a restart. usage: sigterm_load.py [WAITERS] [STREAMS]
"""
import asyncio
import signal
import sys
import tempfile
import time
from pathlib import Path

import grpc
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

sys.path.insert(0, ".")
from tests.helpers import Emulator  # noqa: E402

WAITERS = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
STREAMS = int(sys.argv[2]) if len(sys.argv) > 2 else 100


async def load(address: str, acked: list[str], stop: asyncio.Event):
    channels = [grpc.aio.insecure_channel(address) for _ in range(8)]
    stubs = [pb_grpc.TaskHubSidecarServiceStub(c) for c in channels]
    await stubs[0].StartInstance(pb.CreateInstanceRequest(instanceId="parked", name="never"))
    waits = [stubs[i % 8].WaitForInstanceCompletion(pb.GetInstanceRequest(instanceId="parked"))
             for i in range(WAITERS)]
    streams = [stubs[i % 8].GetWorkItems(pb.GetWorkItemsRequest(maxConcurrentOrchestrationWorkItems=1))
               for i in range(STREAMS)]

    async def starter(k: int):
        n = 0
        while not stop.is_set():
            iid = f"s{k}-{n}"
            n += 1
            try:
                await stubs[k % 8].StartInstance(pb.CreateInstanceRequest(instanceId=iid, name="wf"))
                acked.append(iid)
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.05)

    async def signaller(k: int):
        n = 0
        while not stop.is_set():
            n += 1
            try:
                await stubs[k % 8].SignalEntity(pb.SignalEntityRequest(instanceId=f"@counter@c{k}", name="add",
                                                                       requestId=f"r{k}-{n}"))
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.05)

    tasks = [asyncio.ensure_future(starter(k)) for k in range(8)] + \
            [asyncio.ensure_future(signaller(k)) for k in range(8)]
    await stop.wait()
    for t in tasks:
        t.cancel()
    for w in waits:
        w.cancel()
    for s in streams:
        s.cancel()
    for c in channels:
        await c.close()


def main():
    with tempfile.TemporaryDirectory() as tmp:
        emu = Emulator(Path(tmp) / "e.db", extra=("--max-waiters", str(WAITERS + 10))).start()
        acked: list[str] = []
        result = {}

        async def run():
            stop = asyncio.Event()
            loader = asyncio.ensure_future(load(emu.address, acked, stop))
            await asyncio.sleep(4)
            print(f"before SIGTERM: {len(acked)} starts acknowledged", flush=True)
            t0 = time.monotonic()
            emu.process.signal(signal.SIGTERM)
            loop = asyncio.get_running_loop()
            rc = await loop.run_in_executor(None, emu.process.wait, 30)
            result["exit"] = (rc, time.monotonic() - t0)
            stop.set()
            await loader

        asyncio.run(run())
        rc, took = result["exit"]
        print(f"SIGTERM -> exit {rc} after {took:.2f} s", flush=True)
        emu.restart()
        try:
            async def check():
                async with grpc.aio.insecure_channel(emu.address) as ch:
                    stub = pb_grpc.TaskHubSidecarServiceStub(ch)
                    missing = [i for i in list(acked)
                               if not (await stub.GetInstance(pb.GetInstanceRequest(instanceId=i))).exists]
                    print(f"after restart: {len(acked)} acknowledged starts, {len(missing)} missing "
                          f"{missing[:5]}", flush=True)
            asyncio.run(check())
        finally:
            emu.stop()
        print("emulator output tail:\n" + "\n".join(emu.process.output.splitlines()[-8:]))


main()
