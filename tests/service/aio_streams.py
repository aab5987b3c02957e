"""Raw worker streams on an event loop of the test's own (grpc.aio), and engine-side set-up for them.

Shared by the service tests that hold many streams or calls open at once (bounds, refusals,
the raw protocol).
"""

from __future__ import annotations

import asyncio
import threading

import grpc
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

from tests.helpers import InProcessEmulator


def create(emu: InProcessEmulator, prefix: str, count: int, name: str = "unserved") -> None:
    def go():
        for i in range(count):
            emu.backend.create_instance("default", f"{prefix}{i}", name)
    emu.on_loop(go)


def sleeping(emu: InProcessEmulator) -> int:
    return emu.on_loop(lambda: sum(len(s) for s in emu.backend.dispatch._sleepers.values()))


class Streams:
    """Raw worker streams on a loop of the test's own (grpc.aio), opened and held idle."""

    def __init__(self, address: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.channel = self.run(self._channel(address))
        self.stub = pb_grpc.TaskHubSidecarServiceStub(self.channel)
        self.calls = []

    async def _channel(self, address):
        return grpc.aio.insecure_channel(address)

    def run(self, coroutine, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def open(self, count: int, request: pb.GetWorkItemsRequest, first_item: bool = False) -> None:
        async def go():
            for _ in range(count):
                call = self.stub.GetWorkItems(request)
                if first_item:
                    assert (await call.read()).HasField("orchestratorRequest")
                self.calls.append(call)  # the server sends no headers before its first message
        self.run(go())

    def close(self) -> None:
        """Cancel every call and close the channel; safe to call twice."""
        if not self.thread.is_alive():
            return

        async def go():
            for call in self.calls:
                call.cancel()
            await self.channel.close()
        self.run(go())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
