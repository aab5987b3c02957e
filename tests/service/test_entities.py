"""The SDK's worker and client against a real emulator process: entity features."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from durabletask import client as dt_client
from durabletask import entities, task
from durabletask.internal import orchestrator_service_pb2 as pb

from tests.helpers import wait_until
from worker import counter, counter_workflow

COMPLETED = dt_client.OrchestrationStatus.COMPLETED


def relay(ctx: entities.EntityContext, value):
    """Forwards each 'add' to the counter named in the input: entity-to-entity signals."""
    target, amount = value
    ctx.signal_entity(entities.EntityInstanceId("counter", target), "add", amount)
    ctx.set_state((ctx.get_state(int, 0)) + 1)


def starter(ctx: entities.EntityContext, key: str):
    """Starts an orchestration from inside an entity."""
    return ctx.schedule_new_orchestration("counter_workflow", input=key, instance_id=f"from-entity-{key}")


def eraser(ctx: entities.EntityContext, value):
    if ctx.operation == "set":
        ctx.set_state(value)
    elif ctx.operation == "erase":
        ctx.set_state(None)
    elif ctx.operation == "delete":
        ctx.delete_state() if hasattr(ctx, "delete_state") else ctx.set_state(None)


def transfer(ctx: task.OrchestrationContext, keys):
    """A critical section over two counters: nobody else sees the half-done transfer."""
    a, b = (entities.EntityInstanceId("counter", k) for k in keys)
    with (yield ctx.lock_entities([a, b])):
        balance = yield ctx.call_entity(a, "get")
        yield ctx.call_entity(a, "subtract", balance)
        yield ctx.call_entity(b, "add", balance)
    return balance


def lock_and_fail(ctx: task.OrchestrationContext, key):
    yield ctx.lock_entities([entities.EntityInstanceId("counter", key)])
    raise RuntimeError("failing while holding the lock")


def call_bad_operation(ctx: task.OrchestrationContext, key):
    try:
        yield ctx.call_entity(entities.EntityInstanceId("counter", key), "multiply", 2)
    except task.TaskFailedError as exc:
        return f"failed: {exc}"


@pytest.fixture
def worker(emulator, start_worker):
    return start_worker(emulator.address, orchestrators=[counter_workflow, transfer, lock_and_fail,
                                                          call_bad_operation],
                        entities=[counter, relay, starter, eraser])


def counter_value(client, key):
    meta = client.get_entity(entities.EntityInstanceId("counter", key))
    return meta.get_typed_state(int) if meta else None


def test_client_signals_are_applied_in_order(client, worker, uid):
    cid = entities.EntityInstanceId("counter", uid)
    for i in range(20):
        client.signal_entity(cid, "add", i)
    client.signal_entity(cid, "subtract", 10)
    wait_until(lambda: counter_value(client, uid) == sum(range(20)) - 10, message="counter value")


def test_orchestration_signals_then_calls(client, worker, uid):
    instance_id = client.schedule_new_orchestration(counter_workflow, input=uid)
    state = client.wait_for_orchestration_completion(instance_id, timeout=30)
    assert state.get_output() == f"Counter '{uid}' final value: 12"
    state = client.wait_for_orchestration_completion(
        client.schedule_new_orchestration(counter_workflow, input=uid), timeout=30)
    assert state.get_output() == f"Counter '{uid}' final value: 24"


def test_entity_signals_another_entity(client, worker, uid):
    client.signal_entity(entities.EntityInstanceId("relay", uid), "forward", [uid, 7])
    client.signal_entity(entities.EntityInstanceId("relay", uid), "forward", [uid, 8])
    wait_until(lambda: counter_value(client, uid) == 15, message="relayed adds")


def test_entity_starts_an_orchestration(client, worker, uid):
    client.signal_entity(entities.EntityInstanceId("starter", uid), "start", uid)
    wait_until(lambda: client.get_orchestration_state(f"from-entity-{uid}"), message="started instance")
    state = client.wait_for_orchestration_completion(f"from-entity-{uid}", timeout=30)
    assert state.get_output() == f"Counter '{uid}' final value: 12"


def test_delayed_signal_waits_for_its_time(client, worker, uid):
    cid = entities.EntityInstanceId("counter", uid)
    at = datetime.now(timezone.utc) + timedelta(seconds=1)
    client.signal_entity(cid, "add", 5, signal_time=at)
    client.signal_entity(cid, "add", 1)
    first = wait_until(lambda: client.get_entity(cid), message="the undelayed signal")
    if first.last_modified < at:
        assert first.get_typed_state(int) == 1  # only the undelayed signal before its time
    wait_until(lambda: counter_value(client, uid) == 6, message="the delayed signal")
    # The delayed signal was applied (the entity last changed) no earlier than asked.
    assert client.get_entity(cid).last_modified >= at


def test_critical_section_transfers_atomically(client, worker, uid):
    a, b = f"{uid}-a", f"{uid}-b"
    client.signal_entity(entities.EntityInstanceId("counter", a), "add", 40)
    wait_until(lambda: counter_value(client, a) == 40, message="initial balance")
    ids = [client.schedule_new_orchestration(transfer, input=[a, b]),
           client.schedule_new_orchestration(transfer, input=[b, a])]
    outputs = [client.wait_for_orchestration_completion(i, timeout=30).get_output() for i in ids]
    assert sorted(outputs) == [0, 40] or sorted(outputs) == [40, 40]
    assert counter_value(client, a) + counter_value(client, b) == 40
    for key in (a, b):
        response = client._stub.GetEntity(pb.GetEntityRequest(instanceId=f"@counter@{key}"))
        assert not response.entity.HasField("lockedBy")


def test_lock_is_released_when_orchestration_fails(client, worker, uid):
    client.signal_entity(entities.EntityInstanceId("counter", uid), "add", 1)
    wait_until(lambda: counter_value(client, uid) == 1, message="counter exists")
    state = client.wait_for_orchestration_completion(
        client.schedule_new_orchestration(lock_and_fail, input=uid), timeout=30)
    assert state.runtime_status == dt_client.OrchestrationStatus.FAILED
    client.signal_entity(entities.EntityInstanceId("counter", uid), "add", 1)
    wait_until(lambda: counter_value(client, uid) == 2, message="signal after the lock was released")


def test_failed_operation_rolls_back_and_raises_in_caller(client, worker, uid):
    client.signal_entity(entities.EntityInstanceId("counter", uid), "add", 3)
    state = client.wait_for_orchestration_completion(
        client.schedule_new_orchestration(call_bad_operation, input=uid), timeout=30)
    assert "unknown operation 'multiply'" in state.get_output()
    assert counter_value(client, uid) == 3


def test_query_entities_by_prefix_with_paging(client, worker, uid):
    for i in range(5):
        client.signal_entity(entities.EntityInstanceId("counter", f"{uid}-{i}"), "add", i + 1)
    wait_until(lambda: all(counter_value(client, f"{uid}-{i}") == i + 1 for i in range(5)), message="5 counters")
    query = dt_client.EntityQuery(instance_id_starts_with=f"@counter@{uid}", include_state=True, page_size=2)
    found = client.get_all_entities(query)
    assert sorted(m.id.key for m in found) == [f"{uid}-{i}" for i in range(5)]
    assert sorted(m.get_typed_state(int) for m in found) == [1, 2, 3, 4, 5]
    later = dt_client.EntityQuery(instance_id_starts_with=f"@counter@{uid}",
                                  last_modified_from=datetime.now(timezone.utc) + timedelta(hours=1))
    assert client.get_all_entities(later) == []


def test_entity_is_removed_when_its_state_is_cleared(client, worker, uid):
    eid = entities.EntityInstanceId("eraser", uid)
    client.signal_entity(eid, "set", {"a": 1})
    wait_until(lambda: client.get_entity(eid), message="entity with state")
    client.signal_entity(eid, "erase")
    wait_until(lambda: client.get_entity(eid) is None, message="entity removed")


def test_falsy_state_is_a_real_state(client, worker, uid):
    cid = entities.EntityInstanceId("counter", uid)
    client.signal_entity(cid, "reset")
    meta = wait_until(lambda: client.get_entity(cid), message="entity holding 0")
    assert meta.get_typed_state(int) == 0


def hold_lock(ctx: task.OrchestrationContext, key):
    with (yield ctx.lock_entities([entities.EntityInstanceId("counter", key)])):
        yield ctx.wait_for_external_event("release")
    return "released"


def test_locked_entity_defers_other_senders_until_release(client, emulator, start_worker, uid):
    start_worker(emulator.address, orchestrators=[hold_lock], entities=[counter])
    client.signal_entity(entities.EntityInstanceId("counter", uid), "add", 1)
    wait_until(lambda: counter_value(client, uid) == 1, message="counter exists")
    instance_id = client.schedule_new_orchestration(hold_lock, input=uid)

    def holder():
        response = client._stub.GetEntity(pb.GetEntityRequest(instanceId=f"@counter@{uid}"))
        return response.entity.lockedBy.value

    wait_until(lambda: holder() == instance_id, message="lock granted")
    client.signal_entity(entities.EntityInstanceId("counter", uid), "add", 10)
    wait_until(lambda: client._stub.GetEntity(pb.GetEntityRequest(instanceId=f"@counter@{uid}"))
               .entity.backlogQueueSize == 1, message="signal queued behind the lock")
    assert counter_value(client, uid) == 1
    client.raise_orchestration_event(instance_id, "release")
    assert client.wait_for_orchestration_completion(instance_id, timeout=30).get_output() == "released"
    wait_until(lambda: counter_value(client, uid) == 11, message="deferred signal applied after release")


def test_transient_entities_show_only_when_asked(client, emulator, start_worker, uid):
    """A never-used entity that an orchestration has locked has no state: it is transient."""
    start_worker(emulator.address, orchestrators=[hold_lock], entities=[counter])
    instance_id = client.schedule_new_orchestration(hold_lock, input=uid)
    prefix = f"@counter@{uid}"
    transient_query = dt_client.EntityQuery(instance_id_starts_with=prefix, include_transient=True)
    transient = wait_until(lambda: client.get_all_entities(transient_query), message="lock granted")
    assert [m.id.key for m in transient] == [uid]
    raw = client._stub.QueryEntities(pb.QueryEntitiesRequest(query=pb.EntityQuery(
        instanceIdStartsWith=dt_client.helpers.get_string_value(prefix), includeTransient=True)))
    assert raw.entities[0].lockedBy.value == instance_id
    assert client.get_entity(entities.EntityInstanceId("counter", uid)) is None
    assert client.get_all_entities(dt_client.EntityQuery(instance_id_starts_with=prefix)) == []
    client.raise_orchestration_event(instance_id, "release")
    client.wait_for_orchestration_completion(instance_id, timeout=30)
    assert client.get_all_entities(dt_client.EntityQuery(instance_id_starts_with=prefix,
                                                         include_transient=True)) == []
