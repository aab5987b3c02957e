"""Under load, what grows with work stays bounded and shared, at the size that used to break it.

Idle filtered streams and streams at their limit cost nothing per new work item; a long
history is built off the engine's loop; timed-out waits leave nothing behind; payloads on
disk are not also cached without a byte bound; a backlog goes to every worker, not the first;
a 10,000-deep instance tree is walked without recursion. Each was found by a review of
issue 11's redesign (docs/benchmarks.md, "Attacks on the core", has the figures from before).
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import grpc
import pytest
from durabletask import client as dt_client
from durabletask import entities
from durabletask import worker as dt_worker
from durabletask.internal import orchestrator_service_pb2 as pb

from dts_emulator import events as ev
from dts_emulator import workitems
from dts_emulator.dashboard import views
from tests.helpers import InProcessEmulator, RawWorker, free_port, status_of, text, wait_until
from tests.service.aio_streams import Streams, create, sleeping

HUB = "default"


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


def test_a_stream_that_never_reads_holds_no_more_than_it_is_sent_at_once(emu, stub):
    """A worker stuck before reading keeps its share only: another worker gets work at once, not when it goes.

    At 2,000 small work items (docs/benchmarks.md, "Attacks on the core") such a stream used to hold them all,
    as many as fit in its flow-control window.
    """
    BACKLOG, LIMIT = 2_000, workitems.UNSTATED_LIMIT
    create(emu, "hoarded", BACKLOG)
    streams = Streams(emu.address)
    healthy = None
    try:
        streams.open(1, pb.GetWorkItemsRequest())  # never read
        wait_until(lambda: emu.on_loop(emu.backend.dispatch.leases_held) == LIMIT, message="the stuck stream's share")
        healthy = RawWorker(stub)
        wait_until(lambda: len(healthy.items) == LIMIT, message="the healthy worker's share")
        # The precondition holds throughout: far more work is ready than the two streams hold.
        assert emu.on_loop(emu.backend.dispatch.leases_held) == 2 * LIMIT < BACKLOG
        streams.close()
        wait_until(lambda: emu.on_loop(emu.backend.dispatch.leases_held) == LIMIT,
                   message="the stuck stream's share back in the queue")
    finally:
        if healthy is not None:
            healthy.close()
        streams.close()


# -- recursion: instance trees are walked with a list ----------------------------------------

DEPTH = 10_000


async def _build_chain(emu, ids: list[str]) -> None:
    """A chain of running sub-orchestrations, built through the engine (a worker would need minutes)."""
    backend, store = emu.backend, emu.backend.store
    started = ev.event(executionStarted=pb.ExecutionStartedEvent(name="chain"),
                       at=backend.clock.now()).SerializeToString()
    with backend.tx():
        for n, instance_id in enumerate(ids):
            parent = None
            if n:
                up = store.peek_instance(HUB, ids[n - 1])
                parent = pb.ParentInstanceInfo(taskScheduledId=1, name=text("chain"), orchestrationInstance=(
                    pb.OrchestrationInstance(instanceId=up.instance_id, executionId=text(up.execution_id))))
            row = backend.create_instance(HUB, instance_id, "chain", parent=parent)
            # As if a worker had run it once: started, and waiting for its child.
            store.delete_messages([m.id for m in store.messages_for(HUB, "orchestration", instance_id)])
            store.append_history(HUB, instance_id, [started])
            row.status = pb.ORCHESTRATION_STATUS_RUNNING
            store.put_instance(row)


async def _terminations_queued(emu, ids: list[str]) -> int:
    store = emu.backend.store
    return sum(any(ev.parse(m.payload).HasField("executionTerminated")
                   for m in store.messages_for(HUB, "orchestration", i)) for i in ids)


async def _end_all(emu, ids: list[str]) -> None:
    """What a worker does with each termination: the instance ends as TERMINATED."""
    backend = emu.backend
    with backend.tx():
        for instance_id in ids:
            row = backend.store.get_instance(HUB, instance_id)
            row.status = pb.ORCHESTRATION_STATUS_TERMINATED
            backend.finish_instance(row)


@pytest.mark.slow
def test_a_10000_deep_chain_terminates_and_purges(emu, stub):
    ids = [f"chain-{n}" for n in range(DEPTH)]
    emu.call(_build_chain(emu, ids), timeout=120)
    assert status_of(stub, ids[-1]).parentInstanceId.value == ids[-2]  # the precondition: one chain

    stub.TerminateInstance(pb.TerminateRequest(instanceId=ids[0], recursive=True), timeout=120)
    assert emu.call(_terminations_queued(emu, ids), timeout=120) == DEPTH

    emu.call(_end_all(emu, ids), timeout=120)
    purged = stub.PurgeInstances(pb.PurgeInstancesRequest(instanceId=ids[0], recursive=True), timeout=120)
    assert purged.deletedInstanceCount == DEPTH
    assert not stub.GetInstance(pb.GetInstanceRequest(instanceId=ids[-1])).exists
