"""The SDK's worker and client against a real emulator process: orchestration features."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import grpc
import pytest
from durabletask import client as dt_client
from durabletask import task

from tests.helpers import wait_until

COMPLETED = dt_client.OrchestrationStatus.COMPLETED


def hello(ctx: task.ActivityContext, name: str) -> str:
    return f"Hello, {name}!"


_flaky_calls: dict[str, int] = {}


def flaky(ctx: task.ActivityContext, key: str) -> str:
    _flaky_calls[key] = _flaky_calls.get(key, 0) + 1
    if _flaky_calls[key] < 3:
        raise RuntimeError(f"attempt {_flaky_calls[key]} fails")
    return f"ok after {_flaky_calls[key]}"


def sequence(ctx: task.OrchestrationContext, _):
    results = []
    for name in ("Tokyo", "Seattle", "London"):
        results.append((yield ctx.call_activity(hello, input=name)))
    return results


def fan_out(ctx: task.OrchestrationContext, count: int):
    tasks = [ctx.call_activity(hello, input=str(i)) for i in range(count)]
    return len((yield task.when_all(tasks)))


def with_retries(ctx: task.OrchestrationContext, key: str):
    policy = task.RetryPolicy(first_retry_interval=timedelta(milliseconds=50), max_number_of_attempts=5)
    return (yield ctx.call_activity(flaky, input=key, retry_policy=policy))


def with_timer(ctx: task.OrchestrationContext, seconds: float):
    start = ctx.current_utc_datetime
    yield ctx.create_timer(timedelta(seconds=seconds))
    return (ctx.current_utc_datetime - start).total_seconds()


def approval(ctx: task.OrchestrationContext, _):
    ctx.set_custom_status("waiting for approval")
    approved = yield ctx.wait_for_external_event("approve")
    ctx.set_custom_status("approved")
    return f"approved by {approved}"


def child(ctx: task.OrchestrationContext, n: int):
    return n * 2


def parent(ctx: task.OrchestrationContext, n: int):
    doubled = yield ctx.call_sub_orchestrator(child, input=n, instance_id=f"{ctx.instance_id}-child")
    return doubled + 1


def failing_child(ctx: task.OrchestrationContext, _):
    raise ValueError("child broke")


def parent_of_failure(ctx: task.OrchestrationContext, _):
    try:
        yield ctx.call_sub_orchestrator(failing_child)
    except task.TaskFailedError as exc:
        return f"caught: {exc.details.message}"


def counter_loop(ctx: task.OrchestrationContext, n: int):
    if n < 5:
        ctx.continue_as_new(n + 1)
        return None
    return n


def waits_forever(ctx: task.OrchestrationContext, _):
    yield ctx.wait_for_external_event("never")


def parent_of_waiter(ctx: task.OrchestrationContext, _):
    yield ctx.call_sub_orchestrator(waits_forever, instance_id=f"{ctx.instance_id}-child")


def fails(ctx: task.OrchestrationContext, _):
    raise RuntimeError("boom")


ALL_ORCHESTRATORS = [sequence, fan_out, with_retries, with_timer, approval, child, parent, failing_child,
                     parent_of_failure, counter_loop, waits_forever, parent_of_waiter, fails]
ALL_ACTIVITIES = [hello, flaky]


@pytest.fixture
def worker(emulator, start_worker):
    return start_worker(emulator.address, orchestrators=ALL_ORCHESTRATORS, activities=ALL_ACTIVITIES)


def run(client, fn, input=None, timeout=30, **kwargs):
    instance_id = client.schedule_new_orchestration(fn, input=input, **kwargs)
    state = client.wait_for_orchestration_completion(instance_id, timeout=timeout)
    assert state is not None
    return state


def test_activity_sequence_returns_each_result_in_order(client, worker):
    state = run(client, sequence)
    assert state.runtime_status == COMPLETED, state.failure_details
    assert state.get_output() == ["Hello, Tokyo!", "Hello, Seattle!", "Hello, London!"]


def test_fan_out_fan_in_collects_all_activities(client, worker):
    assert run(client, fan_out, 20).get_output() == 20


def test_activity_retry_policy_retries_until_success(client, worker, uid):
    state = run(client, with_retries, uid)
    assert state.get_output() == "ok after 3"
    assert _flaky_calls[uid] == 3


def test_durable_timer_fires_after_its_delay(client, worker):
    state = run(client, with_timer, 0.5)
    assert state.runtime_status == COMPLETED
    assert state.get_output() >= 0.5


def test_external_event_and_custom_status(client, worker):
    instance_id = client.schedule_new_orchestration(approval)
    wait_until(lambda: (s := client.get_orchestration_state(instance_id)) and s.serialized_custom_status,
               message="custom status")
    assert client.get_orchestration_state(instance_id).get_custom_status() == "waiting for approval"
    client.raise_orchestration_event(instance_id, "approve", data="alice")
    state = client.wait_for_orchestration_completion(instance_id, timeout=30)
    assert state.get_output() == "approved by alice"
    assert state.get_custom_status() == "approved"


def test_sub_orchestration_result_reaches_parent(client, worker, uid):
    state = run(client, parent, 20, instance_id=f"parent-{uid}")
    assert state.get_output() == 41
    child_state = client.get_orchestration_state(f"parent-{uid}-child")
    assert child_state.runtime_status == COMPLETED


def test_failed_sub_orchestration_raises_in_parent(client, worker):
    state = run(client, parent_of_failure)
    assert state.get_output() == "caught: child broke"


def test_continue_as_new_restarts_with_new_input(client, worker):
    state = run(client, counter_loop, 0)
    assert state.get_output() == 5


def test_failed_orchestration_reports_failure_details(client, worker):
    state = run(client, fails)
    assert state.runtime_status == dt_client.OrchestrationStatus.FAILED
    assert "boom" in state.failure_details.message


def test_wait_for_start_and_tags_and_version(client, worker, uid):
    instance_id = client.schedule_new_orchestration(sequence, tags={"team": "entities"}, version="1.0")
    state = client.wait_for_orchestration_start(instance_id, timeout=30)
    assert state.runtime_status in (dt_client.OrchestrationStatus.RUNNING, COMPLETED)
    client.wait_for_orchestration_completion(instance_id, timeout=30)
    raw = client._stub.GetInstance(dt_client.pb.GetInstanceRequest(instanceId=instance_id))
    assert dict(raw.orchestrationState.tags) == {"team": "entities"}
    assert raw.orchestrationState.version.value == "1.0"


def test_scheduled_start_waits_for_its_time(client, worker):
    start_at = datetime.now(timezone.utc) + timedelta(seconds=1)
    state = run(client, child, 1, start_at=start_at)
    assert state.get_output() == 2
    finished = state.last_updated_at.replace(tzinfo=state.last_updated_at.tzinfo or timezone.utc)
    assert finished >= start_at - timedelta(milliseconds=50)


def test_terminate_recursive_stops_children(client, worker, uid):
    instance_id = client.schedule_new_orchestration(parent_of_waiter, instance_id=f"p-{uid}")
    wait_until(lambda: client.get_orchestration_state(f"p-{uid}-child"), message="child instance")
    client.wait_for_orchestration_start(f"p-{uid}-child", timeout=30)
    client.terminate_orchestration(instance_id, output="enough", recursive=True)
    state = client.wait_for_orchestration_completion(instance_id, timeout=30)
    assert state.runtime_status == dt_client.OrchestrationStatus.TERMINATED
    assert state.get_output() == "enough"
    child_state = client.wait_for_orchestration_completion(f"p-{uid}-child", timeout=30)
    assert child_state.runtime_status == dt_client.OrchestrationStatus.TERMINATED


def test_suspend_holds_events_until_resume(client, worker):
    instance_id = client.schedule_new_orchestration(approval)
    client.wait_for_orchestration_start(instance_id, timeout=30)
    client.suspend_orchestration(instance_id)
    wait_until(lambda: client.get_orchestration_state(instance_id).runtime_status
               == dt_client.OrchestrationStatus.SUSPENDED, message="SUSPENDED")
    client.raise_orchestration_event(instance_id, "approve", data="bob")
    client.resume_orchestration(instance_id)
    state = client.wait_for_orchestration_completion(instance_id, timeout=30)
    assert state.get_output() == "approved by bob"


def test_purge_removes_instance_and_children(client, worker, uid):
    run(client, parent, 1, instance_id=f"purge-{uid}")
    result = client.purge_orchestration(f"purge-{uid}", recursive=True)
    assert result.deleted_instance_count == 2
    assert client.get_orchestration_state(f"purge-{uid}") is None
    assert client.get_orchestration_state(f"purge-{uid}-child") is None


def test_purge_keeps_running_instances(client, worker):
    instance_id = client.schedule_new_orchestration(waits_forever)
    client.wait_for_orchestration_start(instance_id, timeout=30)
    assert client.purge_orchestration(instance_id).deleted_instance_count == 0
    client.terminate_orchestration(instance_id)
    client.wait_for_orchestration_completion(instance_id, timeout=30)


def test_purge_by_filter_deletes_matching_ended_instances(client, worker, uid):
    before = datetime.now(timezone.utc)
    ids = [run(client, child, i, instance_id=f"pf-{uid}-{i}").instance_id for i in range(3)]
    result = client.purge_orchestrations_by(created_time_from=before, runtime_status=[COMPLETED])
    assert result.deleted_instance_count >= 3
    assert all(client.get_orchestration_state(i) is None for i in ids)


def test_restart_runs_again_with_same_input(client, worker, uid):
    run(client, child, 21, instance_id=f"r-{uid}")
    new_id = client.restart_orchestration(f"r-{uid}", restart_with_new_instance_id=True)
    assert new_id != f"r-{uid}"
    assert client.wait_for_orchestration_completion(new_id, timeout=30).get_output() == 42


def test_query_instances_filters_and_pages(client, worker, uid):
    for i in range(5):
        run(client, child, i, instance_id=f"q-{uid}-{i}")
    query = dt_client.OrchestrationQuery(instance_id_prefix=f"q-{uid}", max_instance_count=2,
                                         runtime_status=[COMPLETED])
    states = client.get_all_orchestration_states(query)
    assert sorted(s.instance_id for s in states) == [f"q-{uid}-{i}" for i in range(5)]


def test_list_instance_ids_pages_by_completion(client, worker, uid):
    before = datetime.now(timezone.utc)
    for i in range(3):
        run(client, child, i, instance_id=f"l-{uid}-{i}")
    response = client._stub.ListInstanceIds(dt_client.pb.ListInstanceIdsRequest(
        runtimeStatus=[COMPLETED.value], pageSize=2,
        completedTimeFrom=dt_client.helpers.new_timestamp(before)))
    ids = list(response.instanceIds)
    assert len(ids) == 2 and response.lastInstanceKey.value
    more = client._stub.ListInstanceIds(dt_client.pb.ListInstanceIdsRequest(
        runtimeStatus=[COMPLETED.value], pageSize=2, completedTimeFrom=dt_client.helpers.new_timestamp(before),
        lastInstanceKey=response.lastInstanceKey))
    assert {f"l-{uid}-{i}" for i in range(3)} <= set(ids + list(more.instanceIds))


def test_history_stream_shows_the_whole_run(client, worker):
    state = run(client, sequence)
    chunks = client._stub.StreamInstanceHistory(dt_client.pb.StreamInstanceHistoryRequest(
        instanceId=state.instance_id))
    kinds = [e.WhichOneof("eventType") for chunk in chunks for e in chunk.events]
    assert kinds[:2] == ["orchestratorStarted", "executionStarted"]
    assert kinds.count("taskScheduled") == 3 and kinds.count("taskCompleted") == 3
    assert kinds[-1] == "executionCompleted"


def test_starting_a_running_instance_id_again_is_refused(client, worker, uid):
    client.schedule_new_orchestration(waits_forever, instance_id=f"dup-{uid}")
    with pytest.raises(grpc.RpcError) as err:
        client.schedule_new_orchestration(waits_forever, instance_id=f"dup-{uid}")
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    client.terminate_orchestration(f"dup-{uid}")
    client.wait_for_orchestration_completion(f"dup-{uid}", timeout=30)


_attempts: dict[str, int] = {}


def once_broken(ctx: task.ActivityContext, key: str) -> str:
    _attempts[key] = _attempts.get(key, 0) + 1
    if _attempts[key] == 1:
        raise RuntimeError("first attempt fails")
    return "fixed"


def steady(ctx: task.ActivityContext, key: str) -> str:
    _attempts[f"steady-{key}"] = _attempts.get(f"steady-{key}", 0) + 1
    return "steady"


def rewindable(ctx: task.OrchestrationContext, key: str):
    first = yield ctx.call_activity(steady, input=key)
    second = yield ctx.call_activity(once_broken, input=key)
    return [first, second]


def rewindable_parent(ctx: task.OrchestrationContext, key: str):
    return (yield ctx.call_sub_orchestrator(rewindable, input=key, instance_id=f"{ctx.instance_id}-sub"))


def test_rewind_retries_only_what_failed(client, emulator, start_worker, uid):
    start_worker(emulator.address, orchestrators=[rewindable], activities=[once_broken, steady])
    state = run(client, rewindable, uid)
    assert state.runtime_status == dt_client.OrchestrationStatus.FAILED
    client.rewind_orchestration(state.instance_id, reason="fixed the bug")
    state = client.wait_for_orchestration_completion(state.instance_id, timeout=30)
    assert state.runtime_status == COMPLETED, state.failure_details
    assert state.get_output() == ["steady", "fixed"]
    assert _attempts[f"steady-{uid}"] == 1


def test_rewind_reaches_failed_sub_orchestrations(client, emulator, start_worker, uid):
    start_worker(emulator.address, orchestrators=[rewindable, rewindable_parent], activities=[once_broken, steady])
    state = run(client, rewindable_parent, uid, instance_id=f"rw-{uid}")
    assert state.runtime_status == dt_client.OrchestrationStatus.FAILED
    client.rewind_orchestration(f"rw-{uid}")
    state = client.wait_for_orchestration_completion(f"rw-{uid}", timeout=30)
    assert state.get_output() == ["steady", "fixed"]


def test_rewind_of_a_completed_instance_is_refused(client, worker):
    state = run(client, child, 1)
    with pytest.raises(grpc.RpcError) as err:
        client.rewind_orchestration(state.instance_id)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_an_instance_scheduled_for_later_can_be_terminated_before_it_starts(client, worker, uid):
    start_at = datetime.now(timezone.utc) + timedelta(hours=1)
    instance_id = client.schedule_new_orchestration(child, input=1, start_at=start_at, instance_id=f"later-{uid}")
    client.terminate_orchestration(instance_id, output="not needed")
    state = client.wait_for_orchestration_completion(instance_id, timeout=30)
    assert state.runtime_status == dt_client.OrchestrationStatus.TERMINATED
    assert state.get_output() == "not needed"


def test_events_wait_for_a_scheduled_start(client, worker, uid):
    start_at = datetime.now(timezone.utc) + timedelta(seconds=1)
    instance_id = client.schedule_new_orchestration(approval, start_at=start_at, instance_id=f"ev-{uid}")
    client.raise_orchestration_event(instance_id, "approve", data="early bird")
    state = client.wait_for_orchestration_completion(instance_id, timeout=30)
    assert state.runtime_status == COMPLETED, state.failure_details
    assert state.get_output() == "approved by early bird"
