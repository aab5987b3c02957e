"""SkipGracefulOrchestrationTerminations: instances end at once, with no worker to apply it."""

from __future__ import annotations

import grpc
import pytest
from durabletask import client as dt_client
from durabletask import entities, task
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc
from google.protobuf import wrappers_pb2

from dts_emulator import force
from dts_emulator.store import ORCHESTRATION
from tests.helpers import RawWorker, wait_until
from worker import counter

RUNNING = dt_client.OrchestrationStatus.RUNNING


def hold_lock_and_wait(ctx: task.OrchestrationContext, key: str):
    with (yield ctx.lock_entities([entities.EntityInstanceId("counter", key)])):
        yield ctx.wait_for_external_event("go")
    return "done"


def waits(ctx: task.OrchestrationContext, _):
    yield ctx.wait_for_external_event("go")
    return "done"


def parent(ctx: task.OrchestrationContext, child_id: str):
    return (yield ctx.call_sub_orchestrator(waits, instance_id=child_id))


def quick(ctx: task.OrchestrationContext, _):
    return "ok"


@pytest.fixture
def stub(engine_emulator):
    channel = grpc.insecure_channel(engine_emulator.address)
    yield pb_grpc.TaskHubSidecarServiceStub(channel)
    channel.close()


def skip(stub, ids, reason=None):
    return stub.SkipGracefulOrchestrationTerminations(pb.SkipGracefulOrchestrationTerminationsRequest(
        instanceBatch=pb.InstanceBatch(instanceIds=ids), reason=None if reason is None else _string(reason)))


def _string(value: str) -> wrappers_pb2.StringValue:
    return wrappers_pb2.StringValue(value=value)


def test_terminates_at_once_and_returns_what_it_may_not(engine_emulator, stub, start_worker, uid):
    emu = engine_emulator
    c = dt_client.TaskHubGrpcClient(host_address=emu.address)
    w = start_worker(emu.address, orchestrators=[hold_lock_and_wait, waits, parent, quick], entities=[counter])
    locker = c.schedule_new_orchestration(hold_lock_and_wait, input=uid, instance_id=f"locker-{uid}")
    tree = c.schedule_new_orchestration(parent, input=f"child-{uid}", instance_id=f"parent-{uid}")
    done = c.schedule_new_orchestration(quick, instance_id=f"done-{uid}")
    c.wait_for_orchestration_completion(done, timeout=30)
    wait_until(lambda: c.get_orchestration_state(f"child-{uid}") is not None
               and c.get_orchestration_state(f"child-{uid}").runtime_status == RUNNING, message="child running")
    wait_until(lambda: emu.on_loop(lambda: emu.backend.store.locks_held_by("default", locker)),
               message="the lock taken")
    w.stop()  # no worker from here on: a graceful terminate would never be applied
    # The precondition: the stuck one is RUNNING, holds its lock, and has an event waiting for it.
    c.raise_orchestration_event(locker, "unrelated", data=1)
    assert c.get_orchestration_state(locker).runtime_status == RUNNING
    assert emu.on_loop(lambda: emu.backend.store.count_messages("default", ORCHESTRATION, locker)) >= 1

    answer = skip(stub, [locker, "missing-" + uid, done, tree, f"child-{uid}", locker], reason='"stuck"')

    assert list(answer.unterminatedInstanceIds) == ["missing-" + uid, done, tree, f"child-{uid}"]
    state = c.get_orchestration_state(locker)
    assert state.runtime_status == dt_client.OrchestrationStatus.TERMINATED
    assert state.serialized_output == '"stuck"'
    history = [type(e).__name__ for e in c.get_orchestration_history(locker)]
    assert history[-2:] == ["ExecutionTerminatedEvent", "ExecutionCompletedEvent"], history
    assert emu.on_loop(lambda: emu.backend.store.count_messages("default", ORCHESTRATION, locker)) == 0
    assert emu.on_loop(lambda: emu.backend.store.locks_held_by("default", locker)) == []
    assert c.get_orchestration_state(tree).runtime_status == RUNNING
    c.close()


def test_a_completion_in_flight_is_dropped(engine_emulator, stub, uid):
    """The worker held the work item when it was force-terminated: its answer changes nothing."""
    emu = engine_emulator
    c = dt_client.TaskHubGrpcClient(host_address=emu.address)
    instance_id = c.schedule_new_orchestration("anything", instance_id=f"held-{uid}")
    raw = RawWorker(stub)
    try:
        item = raw.next()
        assert item.orchestratorRequest.instanceId == instance_id
        assert list(skip(stub, [instance_id], reason="gone").unterminatedInstanceIds) == []
        stub.CompleteOrchestratorTask(pb.OrchestratorResponse(
            instanceId=instance_id, completionToken=item.completionToken, actions=[pb.OrchestratorAction(
                completeOrchestration=pb.CompleteOrchestrationAction(
                    orchestrationStatus=pb.ORCHESTRATION_STATUS_COMPLETED, result=_string("late")))]))
    finally:
        raw.close()
    state = c.get_orchestration_state(instance_id)
    assert state.runtime_status == dt_client.OrchestrationStatus.TERMINATED
    assert state.serialized_output == "gone"
    c.close()


@pytest.mark.parametrize("size", [0, force.MAX_BATCH + 1])
def test_an_empty_or_oversized_batch_is_refused(stub, size):
    with pytest.raises(grpc.RpcError) as raised:
        skip(stub, [f"i{n}" for n in range(size)])
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "instanceBatch" in raised.value.details()
