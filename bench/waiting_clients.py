"""Many clients blocked in WaitForInstanceCompletion, held cheaply by the benchmark.

Why grpc.aio and not threads: a pending grpc.aio call is a small object on one event loop,
so a thousand of them cost a few MB and no thread; a thousand blocking calls would need a
thousand threads, each with its stack and each taking the GIL back in turn when it wakes.
The calls go through the raw generated stub (no SDK client per waiter) over a few channels,
each on a connection of its own (a local subchannel pool), as separate clients would be.

Proof that the waits reached the server: after a channel's waits are sent, a GetInstance for a
few of the awaited instances is sent on the same connection. HTTP/2 opens streams in order on
a connection, so once that probe is answered, the server has read every wait sent before it;
the probe's answer also shows whether the instances are still unfinished.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass, field

import grpc
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

UNFINISHED = (pb.ORCHESTRATION_STATUS_PENDING, pb.ORCHESTRATION_STATUS_RUNNING)


@dataclass
class Probe:
    """What the GetInstance probes sent after the waits found."""

    sent: int
    answered: int = 0
    unfinished: int = 0
    errors: Counter = field(default_factory=Counter)

    @property
    def confirmed(self) -> bool:
        return self.sent > 0 and self.answered == self.sent == self.unfinished


class WaitingClients:
    """``start(instance_ids)`` sends one wait per instance; ``outcomes`` counts the waits that ended.

    The waits run on an event loop in a thread of this object's own, so the caller stays
    synchronous. ``close()`` cancels the waits still pending (not counted as outcomes).
    """

    def __init__(self, address: str, channels: int = 4, deadline: float = 600.0):
        self.address, self.channel_count, self.deadline = address, channels, deadline
        self.outcomes: Counter = Counter()  # "returned", or the status code of a failed wait
        self._channels: list[grpc.aio.Channel] = []
        self._tasks: list[asyncio.Task] = []
        self._closing = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="waiting-clients", daemon=True)
        self._thread.start()

    def _call(self, coroutine, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def start(self, instance_ids: list[str], probes_per_channel: int = 5, probe_timeout: float = 10.0) -> Probe:
        return self._call(self._start(instance_ids, probes_per_channel, probe_timeout))

    def pending(self) -> int:
        """Waits sent and not ended."""
        return self._call(self._pending(), timeout=30)

    def close(self) -> None:
        try:
            self._call(self._close(), timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    async def _pending(self) -> int:
        return sum(not t.done() for t in self._tasks)

    async def _start(self, ids: list[str], probes_per_channel: int, probe_timeout: float) -> Probe:
        self._channels = [grpc.aio.insecure_channel(self.address, options=[("grpc.use_local_subchannel_pool", 1)])
                          for _ in range(self.channel_count)]
        await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in self._channels)), timeout=30)
        stubs = [pb_grpc.TaskHubSidecarServiceStub(c) for c in self._channels]
        for i, instance_id in enumerate(ids):
            call = stubs[i % len(stubs)].WaitForInstanceCompletion(
                pb.GetInstanceRequest(instanceId=instance_id), timeout=self.deadline)
            self._tasks.append(asyncio.ensure_future(self._hold(call)))
        probes = [stubs[c].GetInstance(pb.GetInstanceRequest(instanceId=ids[i]), timeout=probe_timeout)
                  for c in range(len(stubs)) for i in list(range(c, len(ids), len(stubs)))[-probes_per_channel:]]
        probe = Probe(sent=len(probes))
        for answer in await asyncio.gather(*probes, return_exceptions=True):
            if isinstance(answer, grpc.aio.AioRpcError):
                probe.errors[answer.code().name] += 1
            elif isinstance(answer, BaseException):
                raise answer
            else:
                probe.answered += 1
                probe.unfinished += answer.exists and answer.orchestrationState.orchestrationStatus in UNFINISHED
        return probe

    async def _hold(self, call) -> None:
        try:
            await call
        except asyncio.CancelledError:
            if not self._closing:
                self.outcomes["CANCELLED"] += 1
        except grpc.aio.AioRpcError as exc:
            if not (self._closing and exc.code() == grpc.StatusCode.CANCELLED):
                self.outcomes[exc.code().name] += 1
        else:
            self.outcomes["returned"] += 1

    async def _close(self) -> None:
        self._closing = True
        for channel in self._channels:
            await channel.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
