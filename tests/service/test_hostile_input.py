"""Hostile or faulty requests, sent raw through the generated protobuf stubs (not the SDK).

Each is refused with INVALID_ARGUMENT naming the field (a completion that breaks the
protocol also fails its instance with that reason), leaves nothing behind, and never
loops: the instance ends, and other work goes on.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import time
import urllib.error
import urllib.parse
import urllib.request

import grpc
import pytest
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc
from google.protobuf import wrappers_pb2

from emulator import events as ev
from emulator import orchestrations
from emulator.backend import FIRST_RETRY_SECONDS, MAX_ATTEMPTS
from emulator.store import Store
from tests.helpers import InProcessEmulator, RawWorker, free_port, wait_until

HUB = "default"


def text(value: str) -> wrappers_pb2.StringValue:
    return wrappers_pb2.StringValue(value=value)


@pytest.fixture
def emu(engine_emulator):
    return engine_emulator


@pytest.fixture
def stub(emu):
    channel = grpc.insecure_channel(emu.address)
    yield pb_grpc.TaskHubSidecarServiceStub(channel)
    channel.close()


@pytest.fixture
def worker(stub):
    w = RawWorker(stub)
    yield w
    w.close()


def refused(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call(request)
    return err.value


def status_of(stub, instance_id: str) -> pb.OrchestrationState:
    response = stub.GetInstance(pb.GetInstanceRequest(instanceId=instance_id))
    assert response.exists
    return response.orchestrationState


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


@pytest.mark.parametrize("bad, names", [
    ("nul\x00", "U+0000"), ("del\x7f", "U+007F"), ("bidi\u202e", "U+202E"), ("isolate\u2066", "U+2066"),
])
def test_ids_and_names_with_control_characters_are_refused(stub, bad, names):
    for call, request in [
        (stub.StartInstance, pb.CreateInstanceRequest(instanceId=bad, name="orch")),
        (stub.StartInstance, pb.CreateInstanceRequest(instanceId="fine", name=bad)),
        (stub.RaiseEvent, pb.RaiseEventRequest(instanceId="fine", name=bad)),
        (stub.SignalEntity, pb.SignalEntityRequest(instanceId=f"@c@{bad}", name="add", requestId="r")),
        (stub.SignalEntity, pb.SignalEntityRequest(instanceId="@c@k", name=bad, requestId="r")),
    ]:
        err = refused(call, request)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"must not contain control characters (found {names})" in err.details()


def test_names_are_bounded(stub):
    for call, request in [
        (stub.StartInstance, pb.CreateInstanceRequest(instanceId="fine", name="n" * 1_000_000)),
        (stub.RaiseEvent, pb.RaiseEventRequest(instanceId="fine", name="n" * 257)),
        (stub.SignalEntity, pb.SignalEntityRequest(instanceId="@c@k", name="n" * 257, requestId="r")),
    ]:
        err = refused(call, request)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "the limit is 256" in err.details()
    assert stub.StartInstance(pb.CreateInstanceRequest(instanceId="longest", name="n" * 256)).instanceId


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


# -- what the emulator accepts, its dashboard shows and acts on ----------------------------

ODD_IDS = ["..", ".", "a/b", "../../etc/passwd", "?x=1&y=2", "%2e%2e", "#frag", "ünïcødé", "back\\slash", " space "]
ODD_INPUTS = ["NaN", "Infinity", "{not json", "[" * 100_000 + "]" * 100_000]


@pytest.fixture
def dash():
    emu = InProcessEmulator(None, dashboard_port=free_port()).start()
    yield emu
    emu.stop()


def http(emu, method: str, path: str, **params) -> tuple[int, dict]:
    url = f"{emu.dashboard}{path}?{urllib.parse.urlencode(params)}"
    request = urllib.request.Request(url, data=b"{}" if method == "POST" else None, method=method,
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def test_whatever_is_accepted_the_dashboard_shows_and_acts_on(dash):
    """Odd but valid IDs and keys, and inputs that are not strict JSON (DTS payloads are opaque strings)."""
    channel = grpc.insecure_channel(dash.address)
    stub = pb_grpc.TaskHubSidecarServiceStub(channel)
    try:
        for n, instance_id in enumerate(ODD_IDS):
            stub.StartInstance(pb.CreateInstanceRequest(instanceId=instance_id, name="orch",
                                                        input=text(ODD_INPUTS[n % len(ODD_INPUTS)])))
            stub.SignalEntity(pb.SignalEntityRequest(instanceId=f"@c@{instance_id}", name="add", requestId="r",
                                                     input=text(ODD_INPUTS[n % len(ODD_INPUTS)])))
        for n, instance_id in enumerate(ODD_IDS):
            code, body = http(dash, "GET", f"/api/hubs/{HUB}/instance", id=instance_id)
            assert code == 200, (instance_id, body)
            assert body["instance"]["id"] == instance_id
            assert body["instance"]["input"] == ODD_INPUTS[n % len(ODD_INPUTS)]  # shown as its text
            code, body = http(dash, "GET", f"/api/hubs/{HUB}/entity", id=f"@c@{instance_id}")
            assert code == 200 and len(body["pending"]) == 1, (instance_id, body)
            code, body = http(dash, "POST", f"/api/hubs/{HUB}/instance/terminate", id=instance_id)
            assert code == 200, (instance_id, body)
            assert status_of(stub, instance_id).orchestrationStatus == pb.ORCHESTRATION_STATUS_TERMINATED
            code, body = http(dash, "POST", f"/api/hubs/{HUB}/instance/purge", id=instance_id)
            assert code == 200, (instance_id, body)
        assert not stub.QueryInstances(pb.QueryInstancesRequest()).orchestrationState
    finally:
        channel.close()


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
        caplog.set_level(logging.ERROR, logger="emulator")
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
