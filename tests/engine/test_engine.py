"""The engine in-process (no gRPC): leases, stale completions, and recovery from a failed apply."""

from __future__ import annotations

import pytest
from durabletask.internal import orchestrator_service_pb2 as pb
from google.protobuf import wrappers_pb2

from dts_emulator import activities, orchestrations
from dts_emulator.backend import Backend, StaleWorkItem
from dts_emulator.store import StorageError, Store
from dts_emulator.workitems import Feeder, Filters
from tests.helpers import wait_until
from tests.store.test_failures import FailingConnection


@pytest.fixture
def engine(tmp_path):
    backend = Backend(Store(tmp_path / "engine.db"), ["default"])
    stream = backend.open_stream()
    yield backend, Feeder(backend, "default", stream, Filters())
    backend.store.close()


def schedule_activity_response(instance_id: str, token: str) -> pb.OrchestratorResponse:
    action = pb.OrchestratorAction(id=1, scheduleTask=pb.ScheduleTaskAction(
        name="hello", input=wrappers_pb2.StringValue(value='"x"')))
    return pb.OrchestratorResponse(instanceId=instance_id, completionToken=token, actions=[action])


def test_a_failed_apply_puts_the_work_back(engine, monkeypatch):
    backend, feeder = engine
    backend.create_instance("default", "i1", "orch")
    item = feeder.take()
    original = backend.store.append_history

    def broken(*args, **kwargs):
        raise RuntimeError("disk trouble")

    monkeypatch.setattr(backend.store, "append_history", broken)
    with pytest.raises(RuntimeError):
        orchestrations.complete(backend, schedule_activity_response("i1", item.completionToken))
    monkeypatch.setattr(backend.store, "append_history", original)
    assert feeder.take() is None  # not retried in a hot loop: it comes back after a backoff
    again = wait_until(feeder.take, timeout=5, message="the work back after its backoff")
    assert again.orchestratorRequest.instanceId == "i1"
    assert [e.WhichOneof("eventType") for e in again.orchestratorRequest.newEvents] == [
        "orchestratorStarted", "executionStarted"]
    assert backend.store.history("default", "i1") == []  # the failed attempt left nothing behind
    orchestrations.complete(backend, schedule_activity_response("i1", again.completionToken))
    assert feeder.take().HasField("activityRequest")


def test_a_completion_is_accepted_once(engine):
    backend, feeder = engine
    backend.create_instance("default", "i2", "orch")
    item = feeder.take()
    orchestrations.complete(backend, schedule_activity_response("i2", item.completionToken))
    with pytest.raises(StaleWorkItem):
        orchestrations.complete(backend, schedule_activity_response("i2", item.completionToken))
    assert len(backend.store.messages_for("default", "activity", "i2")) == 1


def test_a_closed_stream_gives_its_work_to_the_next_worker(engine):
    backend, feeder = engine
    backend.create_instance("default", "i3", "orch")
    item = feeder.take()
    orchestrations.complete(backend, schedule_activity_response("i3", item.completionToken))
    activity = feeder.take()
    backend.close_stream(feeder.stream)
    other = Feeder(backend, "default", backend.open_stream(), Filters())
    retry = other.take()
    assert retry.activityRequest.taskId == activity.activityRequest.taskId
    with pytest.raises(StaleWorkItem):
        activities.complete(backend, pb.ActivityResponse(instanceId="i3", taskId=1,
                                                         completionToken=activity.completionToken))
    activities.complete(backend, pb.ActivityResponse(instanceId="i3", taskId=1,
                                                     completionToken=retry.completionToken,
                                                     result=wrappers_pb2.StringValue(value='"hi"')))
    turn = other.take()
    assert turn.orchestratorRequest.newEvents[-1].taskCompleted.result.value == '"hi"'


def test_a_worker_gets_no_more_than_it_takes_at_once(engine):
    backend, _ = engine
    stream = backend.open_stream()
    feeder = Feeder(backend, "default", stream, Filters(), limits={"orchestration": 1})
    backend.create_instance("default", "a", "orch")
    backend.create_instance("default", "b", "orch")
    first = feeder.take()
    assert first.orchestratorRequest.instanceId == "a"
    assert feeder.take() is None  # "b" is ready, but this worker is at its limit
    other = Feeder(backend, "default", backend.open_stream(), Filters()).take()
    assert other.orchestratorRequest.instanceId == "b"  # a second worker takes it
    backend.create_instance("default", "c", "orch")
    done = pb.OrchestratorAction(id=1, completeOrchestration=pb.CompleteOrchestrationAction(
        orchestrationStatus=pb.ORCHESTRATION_STATUS_COMPLETED))
    orchestrations.complete(backend, pb.OrchestratorResponse(instanceId="a", completionToken=first.completionToken,
                                                              actions=[done]))
    assert feeder.take().orchestratorRequest.instanceId == "c"


@pytest.fixture
def failing_engine(tmp_path):
    connect, connections = FailingConnection.connector()
    backend = Backend(Store(tmp_path / "failing.db", connect=connect), ["default"])
    yield backend, Feeder(backend, "default", backend.open_stream(), Filters()), connections[0]
    backend.store.close()


@pytest.mark.parametrize("sqlite_rolled_back", [False, True])
def test_a_completion_whose_commit_fails_changes_nothing_and_comes_back_after_a_backoff(failing_engine,
                                                                                         sqlite_rolled_back):
    backend, feeder, connection = failing_engine
    backend.create_instance("default", "c1", "orch")
    item = feeder.take()
    before = (backend.instance("default", "c1").status, backend.history("default", "c1"),
              [m.id for m in backend.store.messages_for("default", "orchestration", "c1")])
    connection.fail_on, connection.sqlite_rolled_back = "COMMIT", sqlite_rolled_back
    with pytest.raises(StorageError) as failure:
        orchestrations.complete(backend, schedule_activity_response("c1", item.completionToken))
    assert connection.failed == ["COMMIT"]  # the precondition: the commit itself failed
    assert "failing.db" in str(failure.value)
    after = (backend.instance("default", "c1").status, backend.history("default", "c1"),
             [m.id for m in backend.store.messages_for("default", "orchestration", "c1")])
    assert after == before  # the engine's memory is as it was before the transaction
    assert backend.store.messages_for("default", "activity", "c1") == []  # no phantom activity message
    assert backend.dispatch.leases_held() == 0
    assert feeder.take() is None  # no hot retry: the work comes back after a delay
    again = wait_until(feeder.take, timeout=5, message="the work back after its backoff")
    orchestrations.complete(backend, schedule_activity_response("c1", again.completionToken))
    assert feeder.take().HasField("activityRequest")


def test_a_reset_forgets_how_often_work_was_dropped(engine):
    """The pytest plugin resets between tests: a test must not inherit an earlier test's failed attempts."""
    from dts_emulator.backoff import MAX_ATTEMPTS

    backend, _ = engine

    def dropped_once() -> None:
        stream = backend.open_stream()
        item = Feeder(backend, "default", stream, Filters()).take()
        assert item.orchestratorRequest.instanceId == "same-id"
        backend.close_stream(stream)  # a worker that crashes on it

    backend.create_instance("default", "same-id", "orch")
    for _ in range(MAX_ATTEMPTS - 1):
        dropped_once()
    assert backend.instance("default", "same-id").status == pb.ORCHESTRATION_STATUS_PENDING  # one short of giving up
    backend.reset()
    backend.create_instance("default", "same-id", "orch")
    dropped_once()
    assert backend.instance("default", "same-id").status == pb.ORCHESTRATION_STATUS_PENDING
