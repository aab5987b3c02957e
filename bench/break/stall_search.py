"""The dashboard's instance search (auto-refreshed every 2 s) against N instances: its stall of other calls.

usage: stall_search.py N [memory]
"""
import asyncio
import statistics
import sys
import time
import urllib.request

import grpc
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

sys.path.insert(0, ".")
sys.path.insert(0, "bench/break")
from probe import Probe, started  # noqa: E402

from tests.helpers import InProcessEmulator, free_port  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
MEMORY = len(sys.argv) > 2 and sys.argv[2] == "memory"


def main():
    with started(InProcessEmulator, memory=MEMORY, dashboard_port=free_port()) as (emu, _):
        async def fill():
            for i in range(N):
                emu.backend.create_instance("default", f"inst-{i:06d}", "wf", input='"' + "y" * 500 + '"')
        emu.call(fill(), timeout=300)

        async def run():
            async with grpc.aio.insecure_channel(emu.address) as ch:
                stub = pb_grpc.TaskHubSidecarServiceStub(ch)
                def search():
                    url = f"{emu.dashboard}/api/hubs/default/instances?q=nomatch&page_size=200"
                    t = time.perf_counter()
                    with urllib.request.urlopen(url) as r:
                        r.read()
                    return time.perf_counter() - t
                async with Probe(stub, "inst-000000") as probe:
                    await asyncio.sleep(0.3)
                    took = [await asyncio.get_running_loop().run_in_executor(None, search) for _ in range(5)]
                print(f"dashboard search over {N} instances ({'memory' if MEMORY else 'file'}): "
                      f"{statistics.median(took) * 1e3:.0f} ms each; {probe.summary()}", flush=True)
        asyncio.run(run())


main()
