"""The emulator's RSS, in a process of its own, as rounds of 4,000 calls of one kind go by.

usage: wait_memory.py [get|timeout|cancel] [ROUNDS]
  get      GetInstance
  timeout  WaitForInstanceCompletion with a 10 ms deadline (the instances never finish)
  cancel   WaitForInstanceCompletion cancelled by the client right after it is sent
"""
import asyncio
import contextlib
import subprocess
import sys

import grpc
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

sys.path.insert(0, ".")
from bench.common import free_port, rss_mb, stop_process  # noqa: E402
from bench.run import wait_for_line  # noqa: E402

KIND = sys.argv[1] if len(sys.argv) > 1 else "cancel"
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 8
CALLS = 4000
INSTANCES = 50


async def one_call(stub, instance_id: str) -> None:
    request = pb.GetInstanceRequest(instanceId=instance_id)
    if KIND == "get":
        await stub.GetInstance(request)
    elif KIND == "timeout":
        with contextlib.suppress(grpc.aio.AioRpcError):
            await stub.WaitForInstanceCompletion(request, timeout=0.01)
    else:
        call = stub.WaitForInstanceCompletion(request)
        await asyncio.sleep(0)  # sent, then given up
        call.cancel()


async def churn(port: int, pid: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.TaskHubSidecarServiceStub(channel)
        for i in range(INSTANCES):  # orchestrations no worker runs: they never finish
            await stub.StartInstance(pb.CreateInstanceRequest(instanceId=f"m{i}", name="never-run"))
        print(f"{KIND}: start, emulator RSS {rss_mb(pid):.1f} MB", flush=True)
        for r in range(ROUNDS):
            for i in range(CALLS):
                await one_call(stub, f"m{i % INSTANCES}")
            await asyncio.sleep(0.5)  # the last calls' ends reach the server
            print(f"{KIND}: after round {r + 1} ({(r + 1) * CALLS:,} calls), emulator RSS {rss_mb(pid):.1f} MB",
                  flush=True)


def main() -> None:
    if KIND not in ("get", "timeout", "cancel"):
        raise SystemExit(__doc__)
    port = free_port()
    emulator = subprocess.Popen([sys.executable, "-m", "emulator", "--in-memory", "--port", str(port),
                                 "--dashboard-port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_line(emulator, "gRPC endpoint")
        asyncio.run(churn(port, emulator.pid))
    finally:
        stop_process(emulator, 15)


main()
