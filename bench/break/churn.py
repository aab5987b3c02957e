"""Connect/disconnect churn and timed-out waits: do the engine's tables shrink back?

usage: churn.py [ROUNDS] [REPEATS]   (REPEATS: the wait churn again, to tell growth from a high-water mark)
"""
import asyncio
import contextlib
import os
import sys

import grpc
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

sys.path.insert(0, ".")
sys.path.insert(0, "bench/break")
from probe import on_engine  # noqa: E402

from bench.common import rss_mb  # noqa: E402
from tests.helpers import InProcessEmulator  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
REPEATS = int(sys.argv[2]) if len(sys.argv) > 2 else 1


def main():
    emu = InProcessEmulator().start()

    def sizes():
        b, d = emu.backend, emu.backend.dispatch
        return dict(watchers=b.watched, waiting=b.waiting, failures=len(b.backoff._failures),
                    sleepers=sum(len(s) for s in d._sleepers.values()), streams=len(d._streams),
                    held=len(d._held), leases=len(d._leases), due=len(d._due))

    def snapshot():
        return emu.on_loop(sizes)

    try:
        async def run():
            async with grpc.aio.insecure_channel(emu.address) as ch:
                stub = pb_grpc.TaskHubSidecarServiceStub(ch)
                print("start", snapshot(), f"rss {rss_mb(os.getpid()):.0f} MB", flush=True)
                # streams that connect, take one item, and vanish without completing it
                for i in range(ROUNDS // 4):
                    await stub.StartInstance(pb.CreateInstanceRequest(instanceId=f"c{i}", name="wf"))
                async def until_open_streams(count: int, what: str) -> None:
                    deadline = asyncio.get_running_loop().time() + 10
                    while await on_engine(emu, emu.backend.dispatch.open_streams) != count:
                        if asyncio.get_running_loop().time() > deadline:
                            raise SystemExit(f"round {i}: {what} (streams open: {count} expected) after 10 s")
                        await asyncio.sleep(0.001)

                for i in range(ROUNDS):
                    # One item at a time: a stream is sent up to 32, and each one abandoned costs its
                    # instance an attempt (five, and the emulator fails it), so there would be none left.
                    call = stub.GetWorkItems(pb.GetWorkItemsRequest(maxConcurrentOrchestrationWorkItems=1))
                    if i < ROUNDS // 4:
                        await call.read()
                    else:
                        # Connected, nothing taken: the engine counts the stream (the previous one is gone).
                        await until_open_streams(1, "the engine never counted the new stream")
                    call.cancel()
                    await until_open_streams(0, "the engine kept a cancelled stream")
                await asyncio.sleep(1)
                print("after stream churn", snapshot(), f"rss {rss_mb(os.getpid()):.0f} MB", flush=True)
                for repeat in range(REPEATS):
                    # waits with short deadlines on instances that never finish
                    for i in range(ROUNDS):
                        with contextlib.suppress(grpc.aio.AioRpcError):
                            await stub.WaitForInstanceCompletion(
                                pb.GetInstanceRequest(instanceId=f"c{i % (ROUNDS // 4)}"), timeout=0.01)
                    # waits cancelled by the client
                    for i in range(ROUNDS):
                        call = stub.WaitForInstanceCompletion(pb.GetInstanceRequest(instanceId=f"c{i % (ROUNDS // 4)}"))
                        await asyncio.sleep(0)
                        call.cancel()
                    await asyncio.sleep(1)
                    print(f"after wait churn {repeat + 1}/{REPEATS}", snapshot(), f"rss {rss_mb(os.getpid()):.0f} MB",
                          flush=True)
        asyncio.run(run())
    finally:
        emu.stop()


main()
