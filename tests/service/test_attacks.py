"""Attacks on the emulator's core found by a review of issue 11's redesign, each now withstood.

Each was a strict xfail that failed against the code of its day (the figures are in
bench/break/README.md, with a script per attack); the marker went with its fix.
"""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request

import grpc
import pytest
from durabletask import client as dt_client
from durabletask import entities
from durabletask import worker as dt_worker
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

from emulator import control, workitems
from emulator.dashboard import views
from tests.helpers import InProcessEmulator, free_port, wait_until


def create(emu: InProcessEmulator, prefix: str, count: int, name: str = "unserved") -> None:
    def go():
        for i in range(count):
            emu.backend.create_instance("default", f"{prefix}{i}", name)
    emu.on_loop(go)


def sleeping(emu: InProcessEmulator) -> int:
    return emu.on_loop(lambda: sum(len(s) for s in emu.backend.dispatch._sleepers.values()))


@pytest.fixture
def emu():
    e = InProcessEmulator(None).start()
    yield e
    e.stop()


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
        async def go():
            for call in self.calls:
                call.cancel()
            await self.channel.close()
        self.run(go())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_filtered_streams_do_not_rescan_the_backlog_for_every_new_work_item(emu, monkeypatch):
    STREAMS, BACKLOG, NEW = 20, 300, 10
    create(emu, "backlog", BACKLOG)
    streams = Streams(emu.address)
    try:
        only_other = pb.WorkItemFilters(orchestrations=[pb.OrchestrationFilter(name="other")])
        streams.open(STREAMS, pb.GetWorkItemsRequest(workItemFilters=only_other))
        wait_until(lambda: sleeping(emu) == STREAMS, message="every stream idle")
        assert emu.on_loop(lambda: len(emu.backend.dispatch._ready[("default", "orchestration")])) == BACKLOG
        calls = []
        original = workitems.Feeder._accepts
        monkeypatch.setattr(workitems.Feeder, "_accepts", lambda self, *a: calls.append(1) or original(self, *a))
        for i in range(NEW):
            create(emu, f"new{i}-", 1)
            wait_until(lambda: sleeping(emu) == STREAMS, message="every stream idle again")
        # Constant work per stream and new item would be at most a few checks each.
        assert len(calls) <= NEW * STREAMS * 3, f"{len(calls)} filter checks for {NEW} new work items"
    finally:
        streams.close()


def test_streams_at_their_limit_are_not_woken_by_work_they_cannot_take(emu, monkeypatch):
    STREAMS, NEW = 20, 10
    create(emu, "held", STREAMS)
    streams = Streams(emu.address)
    try:
        streams.open(STREAMS, pb.GetWorkItemsRequest(maxConcurrentOrchestrationWorkItems=1,
                                                     maxConcurrentActivityWorkItems=1,
                                                     maxConcurrentEntityWorkItems=1), first_item=True)
        wait_until(lambda: sleeping(emu) == STREAMS, message="every stream idle at its limit")
        assert emu.on_loop(emu.backend.dispatch.leases_held) == STREAMS
        takes = []
        original = workitems.Feeder.take
        monkeypatch.setattr(workitems.Feeder, "take", lambda self: takes.append(1) or original(self))
        for i in range(NEW):
            create(emu, f"new{i}-", 1)
            wait_until(lambda: sleeping(emu) == STREAMS, message="every stream idle again")
        assert len(takes) < NEW * STREAMS / 2, f"{len(takes)} wake-ups for {NEW} items nobody could take"
    finally:
        streams.close()


def test_the_dashboard_does_not_build_a_long_history_on_the_engines_loop():
    EVENTS = 2_000
    port = free_port()
    emu = InProcessEmulator(None, dashboard_port=port).start()
    streams = Streams(emu.address)
    seen: list[tuple[str, int]] = []
    original = views.history
    try:
        _long_history(streams, "long", EVENTS)
        views.history = lambda events: seen.append((threading.current_thread().name, len(events))) or original(
            events)
        with urllib.request.urlopen(f"{emu.dashboard}/api/hubs/default/instance?id=long") as response:
            assert response.status == 200
        assert seen and seen[0][1] > EVENTS  # the view did read the long history
        assert not any(thread == "emulator-engine" and n > 1_000 for thread, n in seen), seen
    finally:
        views.history = original
        streams.close()
        emu.stop()


def _long_history(streams: Streams, instance_id: str, events: int) -> None:
    """An instance with ``events`` EventSent events (sent to an instance that does not exist)."""
    async def go():
        stub = streams.stub
        await stub.StartInstance(pb.CreateInstanceRequest(instanceId=instance_id, name="wf"))
        call = stub.GetWorkItems(pb.GetWorkItemsRequest())
        item = await call.read()
        while not item.HasField("orchestratorRequest"):
            item = await call.read()
        actions = [pb.OrchestratorAction(id=i, sendEvent=pb.SendEventAction(
            instance=pb.OrchestrationInstance(instanceId="nowhere"), name="e")) for i in range(events)]
        await stub.CompleteOrchestratorTask(pb.OrchestratorResponse(
            instanceId=instance_id, actions=actions, completionToken=item.completionToken))
        call.cancel()
    streams.run(go())


def test_an_answer_that_cannot_be_applied_fails_the_instance_whatever_it_raises(emu):
    streams = Streams(emu.address)
    try:
        async def go():
            stub = streams.stub
            await stub.StartInstance(pb.CreateInstanceRequest(instanceId="poison", name="wf"))
            call = stub.GetWorkItems(pb.GetWorkItemsRequest())
            item = await call.read()
            assert item.HasField("orchestratorRequest")
            bad = pb.OrchestratorAction(id=1, sendEntityMessage=pb.SendEntityMessageAction())
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.CompleteOrchestratorTask(pb.OrchestratorResponse(
                    instanceId="poison", actions=[bad], completionToken=item.completionToken))
            call.cancel()
            state = await stub.GetInstance(pb.GetInstanceRequest(instanceId="poison"))
            return refused.value.code(), state.orchestrationState.orchestrationStatus
        code, status = streams.run(go())
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert status == pb.ORCHESTRATION_STATUS_FAILED
    finally:
        streams.close()


def test_waits_that_time_out_leave_nothing_behind(emu):
    create(emu, "waited", 50)
    streams = Streams(emu.address)
    try:
        async def go():
            for i in range(50):
                with pytest.raises(grpc.aio.AioRpcError) as timed_out:
                    await streams.stub.WaitForInstanceCompletion(
                        pb.GetInstanceRequest(instanceId=f"waited{i}"), timeout=0.05)
                assert timed_out.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        streams.run(go())
        wait_until(lambda: emu.on_loop(lambda: emu.backend.waiting) == 0, message="no waiter left")
        assert emu.on_loop(lambda: emu.backend.watched) == 0
    finally:
        streams.close()


def test_a_huge_query_page_is_capped_rather_than_failing_after_the_work():
    emu = InProcessEmulator(None, max_request_bytes=1 << 20).start()
    streams = Streams(emu.address)
    try:
        data = '"' + "x" * 4000 + '"'
        emu.on_loop(lambda: [emu.backend.create_instance("default", f"q{i}", "wf", input=data)
                              for i in range(400)])  # 1.6 MB of inputs, more than one 1 MB message holds

        async def go():
            return await streams.stub.QueryInstances(pb.QueryInstancesRequest(query=pb.InstanceQuery(
                maxInstanceCount=1_000_000, fetchInputsAndOutputs=True)))
        page = streams.run(go())
        assert 0 < len(page.orchestrationState) < 400 and page.HasField("continuationToken")
    finally:
        streams.close()
        emu.stop()


def test_payloads_on_disk_are_not_also_kept_in_memory_without_a_byte_bound(tmp_path):
    COUNT, SIZE = 40, 1_000_000
    emu = InProcessEmulator(tmp_path / "e.db").start()
    try:
        data = '"' + "x" * SIZE + '"'
        emu.on_loop(lambda: [emu.backend.create_instance("default", f"big{i}", "wf", input=data)
                              for i in range(COUNT)])
        store = emu.backend.store

        def cached_bytes() -> int:
            rows = sum(len(r.input or "") + len(r.output or "") for r in store._instances._entries.values())
            histories = sum(len(b) for h in store._histories._entries.values() for b in h)
            return rows + histories

        stored = emu.on_loop(lambda: store.peek_instance("default", "big0"))
        assert stored is not None and len(stored.input) == len(data)  # the precondition: large inputs stored
        assert emu.on_loop(cached_bytes) <= 16 * SIZE, "more than 16 MB of payloads cached besides the queue"
    finally:
        emu.stop()


def test_a_foreign_page_cannot_make_the_dashboard_api_work_for_it():
    port = free_port()
    emu = InProcessEmulator(None, dashboard_port=port).start()
    try:
        request = urllib.request.Request(f"{emu.dashboard}/api/hubs", headers={
            "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request)
        assert refused.value.code == 403
    finally:
        emu.stop()


def test_at_the_waiter_limit_a_wait_that_need_not_wait_still_answers():
    emu = InProcessEmulator(None, max_waiters=2).start()
    streams = Streams(emu.address)
    try:
        create(emu, "parked", 1)
        create(emu, "done", 1)
        emu.on_loop(lambda: control.terminate(emu.backend, "default", "done0", None, False))

        async def hold():
            return [asyncio.ensure_future(streams.stub.WaitForInstanceCompletion(
                pb.GetInstanceRequest(instanceId="parked0"))) for _ in range(2)]
        held = streams.run(hold())
        wait_until(lambda: emu.on_loop(lambda: emu.backend.waiting) == 2, message="two waiters at the limit")

        async def wait_done():
            return await streams.stub.WaitForInstanceCompletion(pb.GetInstanceRequest(instanceId="done0"))
        answer = streams.run(wait_done())
        assert answer.orchestrationState.orchestrationStatus == pb.ORCHESTRATION_STATUS_TERMINATED
        for w in held:
            streams.loop.call_soon_threadsafe(w.cancel)
    finally:
        streams.close()
        emu.stop()


def test_a_backlog_of_entity_batches_is_shared_between_sdk_workers(emu):
    N = 100
    ran = {"A": 0, "B": 0}
    lock = threading.Lock()

    def slow_entity(who: str):
        def slow(ctx: entities.EntityContext, _=None):
            time.sleep(0.05)  # an operation that takes a while, so that a backlog builds up
            with lock:
                ran[who] += 1
            ctx.set_state(1)
        return slow

    client = dt_client.TaskHubGrpcClient(host_address=emu.address)
    workers = []
    try:
        for i in range(N):
            client.signal_entity(entities.EntityInstanceId("slow", f"k{i}"), "go")
        for who in ("A", "B"):
            w = dt_worker.TaskHubGrpcWorker(host_address=emu.address)
            w.add_entity(slow_entity(who))
            w.start()
            workers.append(w)
            if who == "A":
                wait_until(lambda: ran["A"] > 0, message="worker A at work")
                held = emu.on_loop(emu.backend.dispatch.leases_held)
        wait_until(lambda: ran["A"] + ran["B"] == N, timeout=60, message="every batch run")
        assert held < N // 2, f"worker A held {held} of {N} batches when worker B connected"
        assert ran["B"] > 0
    finally:
        for w in workers:
            w.stop()
        client.close()
