"""An orchestration the emulator ends never keeps an entity locked: what it holds is freed, what it waits for withdrawn.

B holds x2; A asks for [x1, x2]: x1 is granted and A's request waits in x2's queue. When the
emulator itself ends A (a client terminates it, its work item outgrew the size limit, workers
dropped it MAX_ATTEMPTS times, its worker answered something that cannot be applied), x1 is
freed and A's request leaves x2's queue in the same transaction. Before, the request stayed,
and when B released x2 it was granted to the finished A: x2 was locked for good.
"""

from __future__ import annotations

import pytest
from durabletask.internal import orchestrator_service_pb2 as pb
from google.protobuf import wrappers_pb2

from dts_emulator import control, entities, force, orchestrations
from dts_emulator.backend import Backend, Refused
from dts_emulator.backoff import MAX_ATTEMPTS
from dts_emulator.store import Store
from dts_emulator.workitems import Feeder, Filters

HUB = "default"
X1, X2 = "@counter@x1", "@counter@x2"
LIMIT = 64 * 1024


@pytest.fixture
def engine(tmp_path):
    backend = Backend(Store(tmp_path / "engine.db"), [HUB], max_message_bytes=LIMIT)
    try:
        yield backend, Feeder(backend, HUB, backend.open_stream(), Filters())
    finally:
        backend.store.close()


def _respond(backend, item: pb.WorkItem, *actions: pb.OrchestratorAction) -> None:
    orchestrations.complete(backend, pb.OrchestratorResponse(
        instanceId=item.orchestratorRequest.instanceId, completionToken=item.completionToken, actions=list(actions)))


def _lock(instance_id: str, *entity_ids: str) -> pb.OrchestratorAction:
    return pb.OrchestratorAction(id=1, sendEntityMessage=pb.SendEntityMessageAction(
        entityLockRequested=pb.EntityLockRequestedEvent(
            criticalSectionId=f"cs-{instance_id}", lockSet=list(entity_ids), position=0,
            parentInstanceId=wrappers_pb2.StringValue(value=instance_id))))


def _lock_owner(backend, entity_id: str) -> str | None:
    row = backend.entity(HUB, entity_id)
    return None if row is None else row.lock_owner


def _a_waits_behind_b(backend, feeder) -> pb.WorkItem:
    """The scenario; returns B's work item holding its grant (leased: B neither ends nor unlocks meanwhile)."""
    backend.create_instance(HUB, "b", "orch")
    _respond(backend, feeder.take(), _lock("b", X2))
    b_turn = feeder.take()
    assert b_turn.orchestratorRequest.newEvents[-1].HasField("entityLockGranted")
    backend.create_instance(HUB, "a", "orch")
    _respond(backend, feeder.take(), _lock("a", X1, X2))
    assert (_lock_owner(backend, X1), _lock_owner(backend, X2)) == ("a", "b")
    assert [m.sender for m in backend.queued(HUB, X2)] == ["a"]  # A's request waits at x2
    return b_turn


def _terminated(backend, feeder) -> None:
    control.terminate(backend, HUB, "a", None, False)
    item = feeder.take()
    assert item.orchestratorRequest.newEvents[-1].HasField("executionTerminated")
    _respond(backend, item, pb.OrchestratorAction(id=3, completeOrchestration=pb.CompleteOrchestrationAction(
        orchestrationStatus=pb.ORCHESTRATION_STATUS_TERMINATED)))  # and no unlock: a worker may omit them


def _too_large(backend, feeder) -> None:
    control.raise_event(backend, HUB, "a", "big", '"' + "x" * LIMIT + '"')
    assert feeder.take() is None  # A's turn outgrew the limit: failed, not offered


def _dropped(backend, feeder) -> None:
    """Each time a worker's stream ends while it holds A's turn (a worker that crashes on it)."""
    control.raise_event(backend, HUB, "a", "go", None)
    for _ in range(MAX_ATTEMPTS):
        stream = backend.open_stream()
        item = Feeder(backend, HUB, stream, Filters()).take()
        assert item.orchestratorRequest.instanceId == "a"
        backend.close_stream(stream)


def _malformed(backend, feeder) -> None:
    control.raise_event(backend, HUB, "a", "go", None)
    with pytest.raises(Refused):
        _respond(backend, feeder.take(), pb.OrchestratorAction(id=5))  # an action with nothing set


def _forced(backend, feeder) -> None:
    """SkipGracefulOrchestrationTerminations: no worker is asked."""
    assert force.skip_graceful_terminations(backend, HUB, ["a"], "stuck") == []


@pytest.mark.parametrize("end", [_terminated, _too_large, _dropped, _malformed, _forced],
                         ids=["terminated", "work item too large", f"dropped {MAX_ATTEMPTS} times", "malformed answer",
                              "force-terminated"])
def test_an_instance_the_emulator_ends_frees_its_locks_and_withdraws_its_request(engine, end):
    backend, feeder = engine
    b_turn = _a_waits_behind_b(backend, feeder)

    end(backend, feeder)
    assert backend.instance(HUB, "a").status in (pb.ORCHESTRATION_STATUS_TERMINATED, pb.ORCHESTRATION_STATUS_FAILED)
    assert _lock_owner(backend, X1) is None  # what A held
    assert backend.queued(HUB, X2) == []  # what A waited for

    _respond(backend, b_turn, pb.OrchestratorAction(id=2, completeOrchestration=pb.CompleteOrchestrationAction(
        orchestrationStatus=pb.ORCHESTRATION_STATUS_COMPLETED)))  # B ends holding x2
    assert _lock_owner(backend, X2) is None  # not granted to the ended A
    entities.signal(backend, HUB, pb.SignalEntityRequest(instanceId=X2, name="add", requestId="r-1"))
    batch = feeder.take()
    assert batch.entityRequest.instanceId == X2 and [op.operation for op in batch.entityRequest.operations] == ["add"]


def test_a_request_from_an_instance_no_longer_there_is_dropped_at_the_front_of_the_queue(engine):
    """A file from an emulator before the withdrawal, or an instance gone from the store: the grant skips it."""
    backend, feeder = engine
    b_turn = _a_waits_behind_b(backend, feeder)
    with backend.tx():
        backend.store.delete_instance(HUB, "a")  # gone without being finished: its request stays queued
    assert [m.sender for m in backend.queued(HUB, X2)] == ["a"]

    _respond(backend, b_turn, pb.OrchestratorAction(id=2, completeOrchestration=pb.CompleteOrchestrationAction(
        orchestrationStatus=pb.ORCHESTRATION_STATUS_COMPLETED)))
    assert _lock_owner(backend, X2) is None
    assert backend.queued(HUB, X2) == []


def test_force_terminating_the_holder_grants_the_lock_to_the_one_waiting(engine):
    """B holds x2 and A waits for it: B force-terminated (its worker gone), A gets x2 and its grant."""
    backend, feeder = engine
    _a_waits_behind_b(backend, feeder)  # B's turn stays leased: as if its worker hung
    assert force.skip_graceful_terminations(backend, HUB, ["b"], "stuck") == []
    assert (_lock_owner(backend, X1), _lock_owner(backend, X2)) == ("a", "a")
    granted = feeder.take()
    assert granted.orchestratorRequest.instanceId == "a"
    assert granted.orchestratorRequest.newEvents[-1].HasField("entityLockGranted")
