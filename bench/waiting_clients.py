"""Many clients blocked in WaitForInstanceCompletion, held cheaply by the benchmark.

Why grpc.aio and not threads: a pending grpc.aio call is a small object on one event loop,
so a thousand of them cost a few MB and no thread; a thousand blocking calls would need a
thousand threads, each with its stack and each taking the GIL back in turn when it wakes.
The calls are made over a few channels, each on a connection of its own (a local subchannel
pool), as separate clients would be, with the generated stub's method path and messages.

Proof that every wait reached the server (a call made is not yet a call sent: grpc writes
calls when it gets to them, and a GetInstance sent after a thousand waits was seen answered
before most of them had arrived):
  1. each wait is made as a stream-unary call on the same method path, writing its one request
     and closing (the bytes on the wire are the same, and the server cannot tell), because such a
     call reports when its request has been written (``write`` and ``done_writing`` return),
     which a unary one does not;
  2. then every connection to the server is drained: nothing left unacknowledged on this side,
     nothing left unread by the server process on its side (/proc/net/tcp). So the server
     process has read every wait, whatever it then does with them.
A sample of GetInstance calls then shows whether the awaited instances are still unfinished.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

UNFINISHED = (pb.ORCHESTRATION_STATUS_PENDING, pb.ORCHESTRATION_STATUS_RUNNING)
WAIT_METHOD = "/TaskHubSidecarService/WaitForInstanceCompletion"


@dataclass
class Probe:
    """What was proved before the measurement: waits sent and read, and a GetInstance sample."""

    waits: int
    sent: int = 0  # waits whose request this side wrote to a connection
    read_by_server: bool = False  # every connection drained: the server process read all of it
    sampled: int = 0
    answered: int = 0
    unfinished: int = 0
    errors: Counter = field(default_factory=Counter)  # of the sample


def _hex_port(address: str) -> int:
    return int(address.rsplit(":", 1)[1], 16)


def unread_bytes(server_port: int) -> int | None:
    """Bytes still on their way over this process's connections to ``server_port`` (Linux /proc/net/tcp and tcp6).

    This side's unacknowledged send queue plus the server side's receive queue (bytes the
    server process has not read). None if this process has no such connection.
    """
    mine = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            mine.add(target[8:-1])
    rows = [line.split() for table in ("tcp", "tcp6")  # grpc may use IPv6 sockets with IPv4-mapped addresses
            for line in Path("/proc/net", table).read_text().splitlines()[1:]]
    ours = [r for r in rows if r[9] in mine and _hex_port(r[2]) == server_port and r[3] == "01"]
    if not ours:
        return None
    our_ports = {_hex_port(r[1]) for r in ours}
    theirs = [r for r in rows if _hex_port(r[1]) == server_port and _hex_port(r[2]) in our_ports]
    return sum(int(r[4].split(":")[0], 16) for r in ours) + sum(int(r[4].split(":")[1], 16) for r in theirs)


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

    def start(self, instance_ids: list[str], sample: int = 20, timeout: float = 10.0) -> Probe:
        """Send the waits and prove they reached the server; ``timeout`` bounds each step of the proof."""
        probe = Probe(waits=len(instance_ids))
        probe.sent = self._call(self._send(instance_ids, timeout))
        deadline = time.monotonic() + timeout
        port = int(self.address.rsplit(":", 1)[1])
        while not (drained := unread_bytes(port) == 0) and time.monotonic() < deadline:
            time.sleep(0.01)
        probe.read_by_server = drained
        self._call(self._sample(instance_ids[-sample:], timeout, probe))
        return probe

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

    async def _send(self, ids: list[str], timeout: float) -> int:
        self._channels = [grpc.aio.insecure_channel(self.address, options=[("grpc.use_local_subchannel_pool", 1)])
                          for _ in range(self.channel_count)]
        await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in self._channels)), timeout=timeout)
        waits = [c.stream_unary(WAIT_METHOD, request_serializer=pb.GetInstanceRequest.SerializeToString,
                                response_deserializer=pb.GetInstanceResponse.FromString) for c in self._channels]
        calls = [waits[i % len(waits)](timeout=self.deadline) for i in range(len(ids))]
        self._tasks = [asyncio.ensure_future(self._hold(call)) for call in calls]

        async def write(call, instance_id: str) -> None:
            await call.write(pb.GetInstanceRequest(instanceId=instance_id))
            await call.done_writing()

        written = await asyncio.wait_for(asyncio.gather(
            *(write(call, instance_id) for call, instance_id in zip(calls, ids, strict=True)),
            return_exceptions=True), timeout=timeout)
        return sum(not isinstance(w, BaseException) for w in written)

    async def _sample(self, ids: list[str], timeout: float, probe: Probe) -> None:
        stubs = [pb_grpc.TaskHubSidecarServiceStub(c) for c in self._channels]
        calls = [stubs[i % len(stubs)].GetInstance(pb.GetInstanceRequest(instanceId=instance_id), timeout=timeout)
                 for i, instance_id in enumerate(ids)]
        probe.sampled = len(calls)
        for answer in await asyncio.gather(*calls, return_exceptions=True):
            if isinstance(answer, grpc.aio.AioRpcError):
                probe.errors[answer.code().name] += 1
            elif isinstance(answer, BaseException):
                raise answer
            else:
                probe.answered += 1
                probe.unfinished += answer.exists and answer.orchestrationState.orchestrationStatus in UNFINISHED

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
