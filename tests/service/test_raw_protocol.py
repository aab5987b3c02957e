"""Hostile or faulty workers, over the raw protocol (the generated protobuf stubs, not the SDK).

A completion that breaks the protocol is refused with INVALID_ARGUMENT naming the field and
fails its instance with that reason, leaving nothing behind; one that keeps failing to apply,
a worker that keeps vanishing and a disk that fails its commits each end in one clear error,
never a loop, and other work goes on.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import time

import grpc
import pytest
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

from dts_emulator import orchestrations
from dts_emulator.backend import FIRST_RETRY_SECONDS, MAX_ATTEMPTS
from dts_emulator.store import Store
from tests.helpers import InProcessEmulator, RawWorker, status_of, text, wait_until
from tests.service.aio_streams import Streams

HUB = "default"


@pytest.fixture
def worker(stub):
    w = RawWorker(stub)
    yield w
    w.close()


def refused(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call(request)
    return err.value


def started(stub, worker: RawWorker, instance_id: str) -> pb.WorkItem:
    """Start an instance and take its first work item."""
    stub.StartInstance(pb.CreateInstanceRequest(instanceId=instance_id, name="orch"))
    item = worker.next()
    assert item.orchestratorRequest.instanceId == instance_id
    return item


def answer(item: pb.WorkItem, *actions: pb.OrchestratorAction) -> pb.OrchestratorResponse:
    return pb.OrchestratorResponse(instanceId=item.orchestratorRequest.instanceId,
                                   completionToken=item.completionToken, actions=list(actions))


def complete(status: int) -> pb.OrchestratorAction:
    return pb.OrchestratorAction(id=9, completeOrchestration=pb.CompleteOrchestrationAction(
        orchestrationStatus=status, result=text('"done"')))


def lock(lock_set: list[str], parent: str) -> pb.OrchestratorAction:
    return pb.OrchestratorAction(id=1, sendEntityMessage=pb.SendEntityMessageAction(
        entityLockRequested=pb.EntityLockRequestedEvent(
            criticalSectionId="cs-1", lockSet=lock_set, position=0, parentInstanceId=text(parent))))


# (name, the actions, what the refusal names); "{id}" is the sending instance's ID.
MALFORMED = [
    ("empty entity message", [pb.OrchestratorAction(id=1, sendEntityMessage=pb.SendEntityMessageAction())],
     "actions[0].sendEntityMessage has no message set (SendEntityMessageAction.EntityMessageType)"),
    ("empty action", [pb.OrchestratorAction(id=1)], "actions[0] has no action set"),
    ("status 99", [complete(99)], "actions[0].completeOrchestration.orchestrationStatus is 99"),
    ("status RUNNING", [complete(pb.ORCHESTRATION_STATUS_RUNNING)],
     "orchestrationStatus is 0 (ORCHESTRATION_STATUS_RUNNING); an instance can only end as one of CANCELED"),
    ("status PENDING", [complete(pb.ORCHESTRATION_STATUS_PENDING)],
     "orchestrationStatus is 6 (ORCHESTRATION_STATUS_PENDING)"),
    ("two completions", [complete(pb.ORCHESTRATION_STATUS_COMPLETED), complete(pb.ORCHESTRATION_STATUS_FAILED)],
     "actions[1].completeOrchestration: a second completeOrchestration"),
    ("lock set with a non-entity", [lock(["@c@ok", "not-an-entity"], "{id}")],
     "actions[0].sendEntityMessage.entityLockRequested.lockSet[1]: entity ID 'not-an-entity' is not of the form"),
    ("signal to a non-entity", [pb.OrchestratorAction(id=1, sendEntityMessage=pb.SendEntityMessageAction(
        entityOperationSignaled=pb.EntityOperationSignaledEvent(
            requestId="r1", operation="add", targetInstanceId=text("nope"))))],
     "actions[0].sendEntityMessage.entityOperationSignaled.targetInstanceId: entity ID 'nope' is not of the form"),
    ("lock set with an empty key", [lock(["@c@"], "{id}")],
     "entityLockRequested.lockSet[0]: entity ID '@c@' has an empty key"),
    ("lock for another instance", [lock(["@c@ok"], "ghost")],
     "entityLockRequested.parentInstanceId is 'ghost'; it must be the sending instance"),
    ("call for another instance", [pb.OrchestratorAction(id=1, sendEntityMessage=pb.SendEntityMessageAction(
        entityOperationCalled=pb.EntityOperationCalledEvent(
            requestId="r1", operation="get", targetInstanceId=text("@c@ok"), parentInstanceId=text("ghost"))))],
     "entityOperationCalled.parentInstanceId is 'ghost'"),
    ("activity without a name", [pb.OrchestratorAction(id=1, scheduleTask=pb.ScheduleTaskAction())],
     "actions[0].scheduleTask.name must not be empty"),
    ("event name with a bidi override", [pb.OrchestratorAction(id=1, sendEvent=pb.SendEventAction(
        instance=pb.OrchestrationInstance(instanceId="x"), name="evil\u202etxt.exe"))],
     "actions[0].sendEvent.name must not contain control characters (found U+202E)"),
    ("a 1 MB sub-orchestration name", [pb.OrchestratorAction(
        id=1, createSubOrchestration=pb.CreateSubOrchestrationAction(instanceId="child", name="n" * 1_000_000))],
     "actions[0].createSubOrchestration.name is 1000000 characters; the limit is 256"),
]


@pytest.mark.parametrize("actions, names", [(a, n) for _, a, n in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_a_malformed_completion_is_refused_and_fails_its_instance(emu, stub, worker, uid, actions, names):
    instance_id = f"hostile-{uid}"
    item = started(stub, worker, instance_id)
    for action in actions:
        if action.sendEntityMessage.entityLockRequested.parentInstanceId.value == "{id}":
            action.sendEntityMessage.entityLockRequested.parentInstanceId.value = instance_id
    err = refused(stub.CompleteOrchestratorTask, answer(item, *actions))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert names in err.details()
    state = status_of(stub, instance_id)
    assert state.orchestrationStatus == pb.ORCHESTRATION_STATUS_FAILED
    assert names in state.failureDetails.errorMessage
    # Nothing of the response was applied: no entity rows, no child, and nothing left to deliver.
    assert not stub.QueryEntities(pb.QueryEntitiesRequest(query=pb.EntityQuery(includeTransient=True))).entities
    assert [i.instanceId for i in stub.QueryInstances(pb.QueryInstancesRequest()).orchestrationState] == [instance_id]
    assert emu.call(_queued(emu, instance_id)) == 0
    with pytest.raises(queue.Empty):
        worker.next(timeout=0.3)  # not redelivered


async def _queued(emu, instance_id: str) -> int:
    return emu.backend.store.count_messages(HUB, "orchestration", instance_id)


def test_a_well_formed_lock_request_is_still_granted(emu, stub, worker, uid):
    """The checks refuse only what is malformed: a well-formed lock request is granted."""
    instance_id = f"locker-{uid}"
    item = started(stub, worker, instance_id)
    stub.CompleteOrchestratorTask(answer(item, lock(["@c@a", "@c@b"], instance_id)))
    granted = worker.next()
    assert any(e.HasField("entityLockGranted") for e in granted.orchestratorRequest.newEvents)
    locked = stub.QueryEntities(pb.QueryEntitiesRequest(query=pb.EntityQuery(includeTransient=True))).entities
    assert {(e.instanceId, e.lockedBy.value) for e in locked} == {("@c@a", instance_id), ("@c@b", instance_id)}


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


def test_a_completion_that_keeps_failing_to_apply_fails_its_instance(emu, stub, worker, uid, monkeypatch):
    """Not a storage error (a bug, say): after MAX_ATTEMPTS tries the instance fails, and other work flows."""
    doomed, other = f"doomed-{uid}", f"other-{uid}"
    real_apply = orchestrations._apply

    def broken(backend, lease, response):
        if lease.target == doomed:
            raise RuntimeError("injected failure while applying")
        return real_apply(backend, lease, response)

    monkeypatch.setattr(orchestrations, "_apply", broken)
    item = started(stub, worker, doomed)
    codes = []
    for attempt in range(MAX_ATTEMPTS):
        if attempt:
            item = worker.next()  # redelivered after a growing delay
            assert item.orchestratorRequest.instanceId == doomed
        codes.append(refused(stub.CompleteOrchestratorTask, answer(item, complete(
            pb.ORCHESTRATION_STATUS_COMPLETED))).code())
    assert codes == [grpc.StatusCode.INTERNAL] * MAX_ATTEMPTS
    state = status_of(stub, doomed)
    assert state.orchestrationStatus == pb.ORCHESTRATION_STATUS_FAILED
    assert f"gave up on this work item after {MAX_ATTEMPTS} failed attempts" in state.failureDetails.errorMessage
    assert "injected failure while applying" in state.failureDetails.errorMessage
    with pytest.raises(queue.Empty):
        worker.next(timeout=0.3)
    item = started(stub, worker, other)
    stub.CompleteOrchestratorTask(answer(item, complete(pb.ORCHESTRATION_STATUS_COMPLETED)))
    assert status_of(stub, other).orchestrationStatus == pb.ORCHESTRATION_STATUS_COMPLETED


def test_a_work_item_whose_worker_keeps_vanishing_fails_its_instance(emu, stub, uid):
    """A worker stream that dies on an item (one larger than that worker receives) does not get it forever."""
    instance_id = f"vanishing-{uid}"
    stub.StartInstance(pb.CreateInstanceRequest(instanceId=instance_id, name="orch"))
    for _ in range(MAX_ATTEMPTS):
        w = RawWorker(stub)
        assert w.next().orchestratorRequest.instanceId == instance_id
        w.close()
        wait_until(lambda: emu.backend.dispatch.leases_held() == 0, message="the lease to be released")
    state = wait_until(lambda: (s := status_of(stub, instance_id)).orchestrationStatus
                       == pb.ORCHESTRATION_STATUS_FAILED and s, message="the instance to fail")
    assert "the worker's stream ended while it held this work item" in state.failureDetails.errorMessage


# -- storage errors: one log line, a clear code, redelivery with backoff, nothing lost ------


class FailingCommits:
    """Every connection the Store opens, made to fail each COMMIT while ``failing`` is set."""

    def __init__(self, error: sqlite3.Error):
        self.error = error
        self.failing = False
        self.failed = 0

    def connect(self, *args, **kwargs):
        return _Failing(sqlite3.connect(*args, **kwargs), self)


class _Failing:
    def __init__(self, db: sqlite3.Connection, switch: FailingCommits):
        self._db, self._switch = db, switch

    def __getattr__(self, name):
        return getattr(self._db, name)

    def execute(self, sql: str, params=()):
        if sql == "COMMIT" and self._switch.failing:
            self._switch.failed += 1
            raise self._switch.error
        return self._db.execute(sql, params)


def disk_full() -> sqlite3.Error:
    error = sqlite3.OperationalError("database or disk is full")
    error.sqlite_errorcode = sqlite3.SQLITE_FULL
    return error


@pytest.mark.slow
@pytest.mark.parametrize("error, code", [
    (sqlite3.OperationalError("disk I/O error"), grpc.StatusCode.UNAVAILABLE),
    (disk_full(), grpc.StatusCode.RESOURCE_EXHAUSTED),
])
def test_storage_errors_are_one_line_a_clear_code_and_retried_with_backoff(tmp_path, caplog, error, code):
    switch = FailingCommits(error)
    path = tmp_path / "failing.db"
    emu = InProcessEmulator(path, store=Store(path, connect=switch.connect)).start()
    channel = grpc.insecure_channel(emu.address)
    stub = pb_grpc.TaskHubSidecarServiceStub(channel)
    worker = RawWorker(stub)
    try:
        item = started(stub, worker, "survivor")
        caplog.set_level(logging.ERROR, logger="dts_emulator")
        switch.failing = True
        err = refused(stub.StartInstance, pb.CreateInstanceRequest(instanceId="refused", name="orch"))
        assert err.code() == code and str(path) in err.details(), err.details()
        # The worker keeps answering; every answer fails to commit, and the item comes back later each time.
        arrivals = [time.monotonic()]
        for _ in range(MAX_ATTEMPTS + 1):  # more than the attempts after which other failures give up
            err = refused(stub.CompleteOrchestratorTask, answer(item, complete(pb.ORCHESTRATION_STATUS_COMPLETED)))
            assert err.code() == code and str(path) in err.details()
            item = worker.next()
            arrivals.append(time.monotonic())
        gaps = [b - a for a, b in zip(arrivals[1:], arrivals[2:], strict=False)]
        assert all(gap >= FIRST_RETRY_SECONDS for gap in gaps), gaps
        assert gaps[-1] > 2 * gaps[0], gaps  # the delay grows: no hot loop
        assert switch.failed >= MAX_ATTEMPTS + 2
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(lines) == 1, lines  # logged once per interval, not once per failure
        assert str(path) in lines[0] and "\n" not in lines[0]
        assert status_of(stub, "survivor").orchestrationStatus == pb.ORCHESTRATION_STATUS_PENDING
        switch.failing = False
        # Its worker goes away: one failure that is not storage's, not the last of many failures.
        worker.close()
        worker = RawWorker(stub)
        item = worker.next()
        stub.CompleteOrchestratorTask(answer(item, complete(pb.ORCHESTRATION_STATUS_COMPLETED)))
        assert status_of(stub, "survivor").orchestrationStatus == pb.ORCHESTRATION_STATUS_COMPLETED
        assert not stub.GetInstance(pb.GetInstanceRequest(instanceId="refused")).exists
    finally:
        worker.close()
        channel.close()
        emu.stop()
