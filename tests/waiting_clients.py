"""Clients that wait: one WaitForInstanceCompletion per instance ID, all at once on one aio channel.

Usage: python tests/waiting_clients.py ADDRESS PREFIX COUNT
Waits on PREFIX-0 .. PREFIX-(COUNT-1); prints one line per wait that ends, with its outcome.
"""

from __future__ import annotations

import asyncio
import sys

import grpc
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc


async def wait_one(stub, instance_id: str) -> None:
    try:
        response = await stub.WaitForInstanceCompletion(pb.GetInstanceRequest(instanceId=instance_id), timeout=300)
        status = pb.OrchestrationStatus.Name(response.orchestrationState.orchestrationStatus)
        print(f"ended {instance_id} {status}", flush=True)
    except grpc.aio.AioRpcError as err:
        print(f"failed {instance_id} {err.code().name} {err.details()}", flush=True)


async def main(address: str, prefix: str, count: int) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.TaskHubSidecarServiceStub(channel)
        print(f"started {count} waits", flush=True)
        await asyncio.gather(*(wait_one(stub, f"{prefix}-{i}") for i in range(count)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
