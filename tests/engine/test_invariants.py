"""Five promises the engine keeps that no worker or client can check for itself, each pinned in-process.

Each test builds the smallest scenario that would break if the engine stopped keeping its
promise, and asserts the scenario's precondition first.
"""

from __future__ import annotations

import pytest
from durabletask.internal import orchestrator_service_pb2 as pb
from google.protobuf import wrappers_pb2

from dts_emulator import activities, entities, orchestrations
from dts_emulator.backend import Backend, Refused
from dts_emulator.store import StorageError, Store
from dts_emulator.workitems import Feeder, Filters
from tests.store.test_failures import FailingConnection

HUB = "default"
DAY = 24 * 3600.0


@pytest.fixture
def engine(tmp_path):
    backend = Backend(Store(tmp_path / "engine.db"), [HUB])
    try:
        yield backend, Feeder(backend, HUB, backend.open_stream(), Filters())
    finally:
        backend.store.close()


def _respond(backend, item: pb.WorkItem, *actions: pb.OrchestratorAction, instance_id: str | None = None) -> None:
    request = item.orchestratorRequest
    orchestrations.complete(backend, pb.OrchestratorResponse(
        instanceId=instance_id or request.instanceId, completionToken=item.completionToken, actions=list(actions)))


def _completed(action_id: int = 1) -> pb.OrchestratorAction:
    return pb.OrchestratorAction(id=action_id, completeOrchestration=pb.CompleteOrchestrationAction(
        orchestrationStatus=pb.ORCHESTRATION_STATUS_COMPLETED))


def _lock_owner(backend, entity_id: str) -> str | None:
    """Who holds the entity's lock (the store keeps no row for an entity with neither state nor lock)."""
    row = backend.entity(HUB, entity_id)
    return None if row is None else row.lock_owner


def test_an_instance_that_ends_by_itself_releases_the_entity_locks_it_holds(engine):
    """Not by the SDK's own unlock: the orchestration completes while it holds the lock."""
    backend, feeder = engine
    entity_id = "@counter@a"
    backend.create_instance(HUB, "holder", "orch")
    lock = pb.EntityLockRequestedEvent(criticalSectionId="cs-1", lockSet=[entity_id], position=0,
                                       parentInstanceId=wrappers_pb2.StringValue(value="holder"))
    _respond(backend, feeder.take(), pb.OrchestratorAction(
        id=1, sendEntityMessage=pb.SendEntityMessageAction(entityLockRequested=lock)))
    entities.signal(backend, HUB, pb.SignalEntityRequest(instanceId=entity_id, name="add", requestId="r-1"))
    assert _lock_owner(backend, entity_id) == "holder"  # the precondition: the lock is held
    granted = feeder.take()
    assert granted.orchestratorRequest.newEvents[-1].HasField("entityLockGranted")
    assert feeder.take() is None  # the client's signal waits behind the lock

    _respond(backend, granted, _completed(2))  # ends holding the lock: no unlock sent
    assert backend.instance(HUB, "holder").status == pb.ORCHESTRATION_STATUS_COMPLETED
    assert _lock_owner(backend, entity_id) is None
    batch = feeder.take()
    assert [op.operation for op in batch.entityRequest.operations] == ["add"]


def test_the_clock_does_not_skip_while_a_work_item_is_leased(engine):
    """An activity that runs while a timer is a day away must not see the day pass."""
    backend, feeder = engine
    backend.clock.skipping = True
    backend.create_instance(HUB, "later", "orch", scheduled_start=backend.clock.now() + DAY)
    backend.create_instance(HUB, "now", "orch")
    running = feeder.take()
    assert running.orchestratorRequest.instanceId == "now"  # leased, and nothing else is ready
    assert feeder.take() is None

    assert backend.post.skip_time() is False
    assert backend.clock.skipped == 0

    _respond(backend, running, _completed())  # the lease ends: now the clock may jump
    assert backend.post.skip_time() is True
    assert backend.clock.skipped >= DAY - 60
    assert feeder.take().orchestratorRequest.instanceId == "later"


def test_a_completion_with_another_instances_token_is_refused(engine):
    backend, feeder = engine
    backend.create_instance(HUB, "a", "orch")
    backend.create_instance(HUB, "b", "orch")
    item_a, item_b = feeder.take(), feeder.take()
    assert (item_a.orchestratorRequest.instanceId, item_b.orchestratorRequest.instanceId) == ("a", "b")

    with pytest.raises(Refused, match="belongs to instance 'a'"):
        _respond(backend, item_a, _completed(), instance_id="b")  # b's answer, a's token
    assert backend.instance(HUB, "b").status == pb.ORCHESTRATION_STATUS_PENDING  # b untouched
    assert backend.history(HUB, "b") == []
    assert backend.instance(HUB, "a").status == pb.ORCHESTRATION_STATUS_FAILED  # the token's work consumed
    _respond(backend, item_b, _completed())  # b's own lease still stands
    assert backend.instance(HUB, "b").status == pb.ORCHESTRATION_STATUS_COMPLETED


def test_a_completed_activitys_message_is_removed_from_the_store(engine):
    backend, feeder = engine
    backend.create_instance(HUB, "i", "orch")
    _respond(backend, feeder.take(), pb.OrchestratorAction(id=1, scheduleTask=pb.ScheduleTaskAction(name="hello")))
    task = feeder.take()
    assert task.HasField("activityRequest")
    assert len(backend.store.messages_for(HUB, "activity", "i")) == 1  # the precondition: it is stored

    activities.complete(backend, pb.ActivityResponse(instanceId="i", taskId=1, completionToken=task.completionToken,
                                                     result=wrappers_pb2.StringValue(value='"hi"')))
    assert backend.store.messages_for(HUB, "activity", "i") == []
    turn = feeder.take()
    assert turn.orchestratorRequest.newEvents[-1].taskCompleted.result.value == '"hi"'
    assert feeder.take() is None  # and the activity is not offered again


def test_after_commit_effects_do_not_run_when_the_commit_fails(tmp_path):
    connect, connections = FailingConnection.connector()
    backend = Backend(Store(tmp_path / "failing.db", connect=connect), [HUB])
    try:
        feeder = Feeder(backend, HUB, backend.open_stream(), Filters())
        ran = []
        connections[0].fail_on = "COMMIT"
        with pytest.raises(StorageError), backend.tx():
            backend.transactions.after_commit(lambda: ran.append("effect"))
            backend.create_instance(HUB, "lost", "orch")  # would mark it ready after the commit
        assert connections[0].failed == ["COMMIT"]  # the precondition: the commit itself failed
        assert ran == []
        assert backend.instance(HUB, "lost") is None
        assert feeder.take() is None  # no work item for an instance that was never stored

        with backend.tx():  # the next change commits, and its effects (only its own) run
            backend.transactions.after_commit(lambda: ran.append("next"))
        assert ran == ["next"]
    finally:
        backend.store.close()
