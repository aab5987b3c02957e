"""The emulator's RSS (python -m emulator, data file) after N StartInstance calls with inputs of SIZE bytes
that no worker has taken yet: what does the engine keep in memory besides the file?

usage: rss_payloads.py N SIZE
"""
import asyncio
import sys

import grpc
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc
from google.protobuf import wrappers_pb2

sys.path.insert(0, ".")
sys.path.insert(0, "bench/break")
from probe import started  # noqa: E402

from bench.common import rss_mb  # noqa: E402
from tests.helpers import Emulator  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200
SIZE = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000


def main():
    with started(Emulator) as (emu, tmp):
        pid = emu.process.proc.pid

        async def run():
            async with grpc.aio.insecure_channel(emu.address) as ch:
                stub = pb_grpc.TaskHubSidecarServiceStub(ch)
                base = rss_mb(pid)
                data = wrappers_pb2.StringValue(value='"' + "x" * SIZE + '"')
                for i in range(N):
                    await stub.StartInstance(pb.CreateInstanceRequest(instanceId=f"p{i}", name="wf", input=data))
                await asyncio.sleep(1)
                size = sum(f.stat().st_size for f in tmp.iterdir()) / 1e6
                print(f"emulator RSS {base:.0f} MB -> {rss_mb(pid):.0f} MB after {N} x {SIZE / 1e6:.1f} MB "
                      f"inputs ({N * SIZE / 1e6:.0f} MB of payload; data files {size:.0f} MB)", flush=True)
        asyncio.run(run())


main()
