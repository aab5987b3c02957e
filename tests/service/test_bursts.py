"""A burst of calls far past grpc core's default pending-request limits: none is cancelled for load.

grpc core cancels calls that wait to be accepted once 1,000 are pending (some) or 3,000 (all),
with CANCELLED and no word why; the emulator raises those limits so that a burst waits its
turn, and its own documented limits (``--max-waiters``) answer RESOURCE_EXHAUSTED by name.
"""

from __future__ import annotations

import asyncio
import collections
import uuid

import grpc
import pytest
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

from tests.helpers import Emulator

BURST = 2_500  # 2,000 at once lost 185 to CANCELLED before the fix


@pytest.fixture
def emulator_process(tmp_path):
    emu = Emulator(tmp_path / "burst.db", extra=("--max-waiters", "50")).start()
    yield emu
    emu.stop()


async def _burst(address: str, call) -> collections.Counter:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.TaskHubSidecarServiceStub(channel)
        results = await asyncio.gather(*(call(stub, i) for i in range(BURST)), return_exceptions=True)
    codes = collections.Counter()
    for r in results:
        codes[r.code().name if isinstance(r, grpc.aio.AioRpcError) else "OK" if not isinstance(r, BaseException)
              else type(r).__name__] += 1
    return codes


def test_a_burst_of_start_instance_is_served_whole(emulator_process):
    run = uuid.uuid4().hex[:8]

    async def start(stub, i):
        return await stub.StartInstance(pb.CreateInstanceRequest(instanceId=f"b-{run}-{i}", name="nobody_runs_it"),
                                        timeout=120)

    codes = asyncio.run(_burst(emulator_process.address, start))
    assert codes == {"OK": BURST}, codes


@pytest.mark.slow
def test_waits_past_max_waiters_are_refused_by_name_not_cancelled(emulator_process):
    instance_id = f"w-{uuid.uuid4().hex[:8]}"  # never runs (no worker knows it): every wait stays

    async def create():
        async with grpc.aio.insecure_channel(emulator_process.address) as channel:
            await pb_grpc.TaskHubSidecarServiceStub(channel).StartInstance(
                pb.CreateInstanceRequest(instanceId=instance_id, name="nobody_runs_it"), timeout=30)

    asyncio.run(create())

    async def wait(stub, i):
        try:
            return await stub.WaitForInstanceCompletion(pb.GetInstanceRequest(instanceId=instance_id), timeout=8)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                assert "--max-waiters" in exc.details(), exc.details()
            raise

    codes = asyncio.run(_burst(emulator_process.address, wait))
    assert codes == {"RESOURCE_EXHAUSTED": BURST - 50, "DEADLINE_EXCEEDED": 50}, codes
