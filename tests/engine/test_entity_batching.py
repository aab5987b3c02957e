"""Entity operations gather into batches while the worker is busy, and never wait long for it.

A raw worker stream (no SDK worker) holds one entity's batch while signals go to others, so
what the stream is sent, and when, is exactly what the emulator decided. The windows are
stretched (seconds, not milliseconds) so that a slow machine cannot blur what is held back.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import pytest
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc
from google.protobuf import wrappers_pb2

from dts_emulator import workitems
from dts_emulator.store import ENTITY
from tests.helpers import InProcessEmulator, RawWorker, wait_until

HUB = "default"
BUSY, LATER = "@counter@busy", "@counter@later"


class EntityWorker(RawWorker):
    """A raw worker stream with a channel of its own, and what these tests do with entities."""

    def __init__(self, address: str, entities: list[str] | None = None):
        self.channel = grpc.insecure_channel(address)
        self.stub = pb_grpc.TaskHubSidecarServiceStub(self.channel)
        request = pb.GetWorkItemsRequest()
        if entities is not None:  # work-item filters: these entity names only
            request.workItemFilters.entities.extend(pb.EntityFilter(name=name) for name in entities)
        super().__init__(self.stub, request)

    def signal(self, entity_id: str, times: int = 1) -> None:
        for _ in range(times):
            self.stub.SignalEntity(pb.SignalEntityRequest(
                instanceId=entity_id, name="add", input=wrappers_pb2.StringValue(value="1"),
                requestId=uuid.uuid4().hex))

    def batches(self, entity_id: str) -> list[pb.EntityRequest]:
        return [i.entityRequest for i in list(self.items) if i.entityRequest.instanceId == entity_id]

    def wait_batches(self, entity_id: str, count: int, timeout: float = 15.0) -> list[pb.EntityRequest]:
        """Wait until the entity has been sent ``count`` batches; all of them."""
        wait_until(lambda: len(self.batches(entity_id)) >= count, timeout=timeout,
                   message=f"batch {count} for {entity_id}")
        return self.batches(entity_id)

    def held(self, entity_id: str) -> pb.WorkItem:
        """Signal the entity and return the batch it is sent, which this worker never completes."""
        count = len(self.batches(entity_id)) + 1
        self.signal(entity_id)
        self.wait_batches(entity_id, count)
        return next(i for i in reversed(self.items) if i.entityRequest.instanceId == entity_id)

    def make_recent(self, entity_id: str) -> None:
        """One batch for the entity, completed: from now on it counts as receiving a stream of operations."""
        self.complete(self.held(entity_id))

    def complete(self, item: pb.WorkItem) -> None:
        results = [pb.OperationResult(success=pb.OperationResultSuccess()) for _ in item.entityRequest.operations]
        self.stub.CompleteEntityTask(pb.EntityBatchResult(
            completionToken=item.completionToken, results=results, entityState=wrappers_pb2.StringValue(value="1")))

    def close(self) -> None:
        super().close()
        self.channel.close()


@contextmanager
def running(monkeypatch, gather: float, recent: float = 600.0,
            entities: list[str] | None = None) -> Iterator[tuple[InProcessEmulator, EntityWorker]]:
    """An emulator with the gathering windows stretched (set before it starts), and one raw worker."""
    monkeypatch.setattr(workitems, "GATHER_WINDOW", gather)
    monkeypatch.setattr("dts_emulator.dispatch.ENTITY_RECENT", recent)
    with InProcessEmulator() as emu:
        worker = EntityWorker(emu.address, entities)
        try:
            yield emu, worker
        finally:
            worker.close()


def held_back(emu, entity_id: str) -> bool:
    """The entity has an operation to send and a stream to take it, yet it is not sent."""
    dispatcher = emu.backend.dispatch
    return emu.on_loop(lambda: dispatcher.is_ready(HUB, ENTITY, entity_id)
                       and not dispatcher.is_leased(HUB, ENTITY, entity_id))


def leases(emu) -> int:
    return emu.on_loop(emu.backend.dispatch.leases_held)


def test_operations_that_arrive_while_a_batch_is_out_gather_into_one_batch(monkeypatch):
    with running(monkeypatch, gather=600.0) as (emu, worker):  # only the held batch's end releases LATER
        worker.make_recent(LATER)
        busy = worker.held(BUSY)
        worker.signal(LATER, times=3)
        # Precondition: the stream holds BUSY's batch, and LATER's operations wait at the emulator.
        assert leases(emu) == 1
        assert held_back(emu, LATER)

        worker.complete(busy)
        later = worker.wait_batches(LATER, 2)
        assert len(later[1].operations) == 3  # one batch, one round trip, for the three signals


def test_an_entity_at_rest_is_sent_at_once_while_a_batch_is_out(monkeypatch):
    with running(monkeypatch, gather=600.0) as (emu, worker):
        worker.held(BUSY)
        worker.signal(LATER)  # never sent a batch: nothing gathers for it (an orchestration's call_entity)
        assert len(worker.wait_batches(LATER, 1)[0].operations) == 1
        assert leases(emu) == 2


def test_an_idle_stream_is_sent_a_recent_entity_at_once(monkeypatch):
    with running(monkeypatch, gather=600.0) as (emu, worker):
        worker.make_recent(BUSY)
        wait_until(lambda: leases(emu) == 0, message="the batch to complete")
        worker.signal(BUSY)  # recent, but the stream holds nothing: sent at once, window or not
        assert len(worker.wait_batches(BUSY, 2)[1].operations) == 1


def test_a_batch_that_runs_long_holds_back_a_recent_entity_for_the_window_only(monkeypatch):
    with running(monkeypatch, gather=2.0) as (emu, worker):
        worker.make_recent(LATER)
        worker.held(BUSY)  # never completed: a slow operation
        worker.signal(LATER)
        assert held_back(emu, LATER)  # precondition: gathering holds it back at first
        worker.wait_batches(LATER, 2)  # then the window closes, with BUSY's batch still out
        assert leases(emu) == 2


def _flood(worker: EntityWorker, stop: threading.Event, every: float) -> None:
    """A new entity every ``every`` seconds, each sent at once: the stream always holds a fresh batch."""
    for i in range(60):
        if stop.wait(every):
            return
        worker.signal(f"@counter@cold-{i}")


def test_a_recent_entity_waits_the_window_at_most_while_other_entities_keep_the_stream_busy(monkeypatch):
    window = 1.0
    with running(monkeypatch, gather=window) as (emu, worker):
        worker.make_recent(LATER)
        worker.held(BUSY)
        worker.signal(LATER)
        stop = threading.Event()
        flooder = threading.Thread(target=_flood, args=(worker, stop, 0.1))
        flooder.start()
        try:
            worker.wait_batches(LATER, 2, timeout=10)
        finally:
            stop.set()
            flooder.join()
        # Precondition: cold entities were sent, less than the window apart, before LATER went out.
        order = [i.entityRequest.instanceId for i in worker.items]
        assert order.index(LATER, order.index(BUSY)) > order.index("@counter@cold-5")
        assert len([name for name in order if "cold" in name]) < 60  # LATER went out while the flood went on


@pytest.mark.slow
def test_a_filtered_stream_wakes_for_its_own_entity_when_the_window_ends(monkeypatch):
    """The oldest ready entity is one this stream does not serve: LATER's deadline still wakes it."""
    window = 3.0  # long, so that the two outcomes below are 1.5 s apart
    with running(monkeypatch, gather=window, entities=["counter"]) as (emu, worker):
        worker.make_recent(LATER)
        worker.held(BUSY)
        # The scenario, spaced out in time: an entity no stream here serves is ready first (its
        # deadline passes before LATER's), and a cold entity sent after LATER keeps the stream's
        # gathering going past LATER's deadline.
        worker.signal("@other@first")
        time.sleep(window / 4)
        worker.signal(LATER)
        signalled = time.monotonic()
        assert held_back(emu, LATER)
        time.sleep(window / 2)
        worker.signal("@counter@cold")
        worker.wait_batches("@counter@cold", 1)
        worker.wait_batches(LATER, 2, timeout=10)
        waited = time.monotonic() - signalled
        # LATER went out on its own deadline (`window` after it was signalled), not when the cold
        # batch's gathering ended (1.5 x `window`).
        assert waited < 1.25 * window, f"LATER waited {waited:.2f} s"
