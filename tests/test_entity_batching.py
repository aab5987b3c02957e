"""Entity operations gather into batches while the worker is busy, and never wait long for it.

A raw worker stream (no SDK worker) holds one entity's batch while signals go to a second
entity, so what the stream is sent, and when, is exactly what the emulator decided.
"""

from __future__ import annotations

import threading
import time
import uuid

import grpc
import pytest
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc
from google.protobuf import wrappers_pb2

from emulator import dispatch, workitems
from emulator.store import ENTITY
from tests.helpers import InProcessEmulator, wait_until

HUB = "default"
BUSY, LATER = "@counter@busy", "@counter@later"


@pytest.fixture
def emu():
    with InProcessEmulator() as emulator:
        yield emulator


class RawWorker:
    """One GetWorkItems stream read on a thread of its own, so a test can look while nothing arrives."""

    def __init__(self, address: str):
        self.channel = grpc.insecure_channel(address)
        self.stub = pb_grpc.TaskHubSidecarServiceStub(self.channel)
        self.items: list[pb.WorkItem] = []
        self._stream = self.stub.GetWorkItems(pb.GetWorkItemsRequest())
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for item in self._stream:
                if not item.HasField("healthPing"):
                    self.items.append(item)
        except grpc.RpcError:
            pass  # the stream is cancelled when the test ends

    def signal(self, entity_id: str, times: int = 1) -> None:
        for _ in range(times):
            self.stub.SignalEntity(pb.SignalEntityRequest(
                instanceId=entity_id, name="add", input=wrappers_pb2.StringValue(value="1"),
                requestId=uuid.uuid4().hex))

    def batch_for(self, entity_id: str) -> pb.EntityRequest:
        """The first batch sent for the entity (waiting for it)."""
        def found():
            return next((i.entityRequest for i in self.items if i.entityRequest.instanceId == entity_id), None)
        return wait_until(found, message=f"a batch for {entity_id}")

    def complete(self, item: pb.WorkItem, state: str) -> None:
        results = [pb.OperationResult(success=pb.OperationResultSuccess()) for _ in item.entityRequest.operations]
        self.stub.CompleteEntityTask(pb.EntityBatchResult(
            completionToken=item.completionToken, results=results, entityState=wrappers_pb2.StringValue(value=state)))

    def close(self) -> None:
        self._stream.cancel()
        self.channel.close()


@pytest.fixture
def worker(emu):
    raw = RawWorker(emu.address)
    yield raw
    raw.close()


def _waiting_unleased(emu, entity_id: str) -> bool:
    dispatcher = emu.backend.dispatch
    return emu.on_loop(lambda: dispatcher.is_ready(HUB, ENTITY, entity_id)
                       and not dispatcher.is_leased(HUB, ENTITY, entity_id))


def _windows(monkeypatch, gather: float, recent: float = 600.0) -> None:
    monkeypatch.setattr(workitems, "GATHER_WINDOW", gather)
    monkeypatch.setattr(workitems, "ENTITY_RECENT", recent)
    monkeypatch.setattr(dispatch, "LEASE_MEMORY", recent)


def _make_recent(worker: RawWorker, entity_id: str) -> None:
    """One batch for the entity, completed: from now on it counts as receiving a stream of operations."""
    before = len(worker.items)
    worker.signal(entity_id)
    wait_until(lambda: len(worker.items) == before + 1, message=f"a batch for {entity_id}")
    worker.complete(worker.items[-1], "1")


def _held(worker: RawWorker, entity_id: str) -> pb.WorkItem:
    """A batch the worker is sent and never completes."""
    before = len(worker.items)
    worker.signal(entity_id)
    wait_until(lambda: len(worker.items) == before + 1, message=f"a batch for {entity_id}")
    return worker.items[-1]


def _batches(worker: RawWorker, entity_id: str) -> list[pb.EntityRequest]:
    return [i.entityRequest for i in worker.items if i.entityRequest.instanceId == entity_id]


def test_operations_that_arrive_while_a_batch_is_out_gather_into_one_batch(emu, worker, monkeypatch):
    _windows(monkeypatch, gather=600.0)  # only the held batch's end releases the next
    _make_recent(worker, LATER)
    busy = _held(worker, BUSY)
    worker.signal(LATER, times=3)
    # Precondition: the stream holds BUSY's batch, and LATER's operations wait at the emulator.
    assert emu.on_loop(emu.backend.dispatch.leases_held) == 1
    assert _waiting_unleased(emu, LATER)
    assert len(_batches(worker, LATER)) == 1

    worker.complete(busy, "1")
    wait_until(lambda: len(_batches(worker, LATER)) == 2, message="LATER's next batch")
    assert len(_batches(worker, LATER)[1].operations) == 3  # one batch, one round trip, for the three signals


def test_an_entity_not_sent_a_batch_lately_is_sent_at_once_while_a_batch_is_out(emu, worker, monkeypatch):
    _windows(monkeypatch, gather=600.0)
    _held(worker, BUSY)
    worker.signal(LATER)  # nothing gathers for it: an orchestration's first call_entity does not wait
    assert len(worker.batch_for(LATER).operations) == 1
    assert emu.on_loop(emu.backend.dispatch.leases_held) == 2


def test_an_idle_stream_gets_an_entity_operation_at_once(emu, worker, monkeypatch):
    _windows(monkeypatch, gather=600.0)
    _make_recent(worker, BUSY)  # sent at once, although the window is ten minutes long
    wait_until(lambda: emu.on_loop(emu.backend.dispatch.leases_held) == 0, message="the batch to complete")
    worker.signal(BUSY)  # recent, but the stream holds nothing: sent at once again
    wait_until(lambda: len(_batches(worker, BUSY)) == 2, message="the second batch")
    assert len(_batches(worker, BUSY)[1].operations) == 1


def test_a_batch_that_runs_long_holds_back_other_entities_only_for_the_window(emu, worker, monkeypatch):
    _windows(monkeypatch, gather=0.2)
    _make_recent(worker, LATER)
    _held(worker, BUSY)  # never completed: a slow operation
    worker.signal(LATER)
    wait_until(lambda: len(_batches(worker, LATER)) == 2, message="LATER's next batch")  # the window closed
    assert emu.on_loop(emu.backend.dispatch.leases_held) == 2  # while BUSY's batch was still out


def test_a_recent_entity_waits_the_window_at_most_while_other_entities_keep_the_stream_busy(
        emu, worker, monkeypatch):
    window = 1.0
    _windows(monkeypatch, gather=window)
    _make_recent(worker, LATER)
    _held(worker, BUSY)
    worker.signal(LATER)
    signalled = time.monotonic()
    stop, sent_at = threading.Event(), []

    def flood() -> None:  # a new entity every 0.1 s: each is sent at once, so the stream always holds a fresh batch
        for i in range(40):
            if stop.wait(0.1):
                return
            worker.signal(f"@counter@cold-{i}")
            sent_at.append(time.monotonic())

    flooder = threading.Thread(target=flood)
    flooder.start()
    try:
        wait_until(lambda: len(_batches(worker, LATER)) == 2, timeout=10, message="LATER's next batch")
        waited = time.monotonic() - signalled
    finally:
        stop.set()
        flooder.join()
    # Precondition: new entities kept arriving, less than the window apart, until LATER was sent.
    before = [t for t in sent_at if t < signalled + waited]
    assert len(before) >= 5
    assert max(b - a for a, b in zip([signalled, *before], before, strict=False)) < window
    assert len(sent_at) < 40  # LATER went out while the flood went on
