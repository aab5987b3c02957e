"""The same scenarios against durabletask.testing's in-memory backend and the emulator agree."""

from __future__ import annotations

from datetime import timedelta

import pytest
from durabletask import client as dt_client
from durabletask import entities, task

from tests.helpers import serve_in_memory_backend, wait_until
from worker import counter, counter_workflow


def greet(ctx: task.ActivityContext, name: str) -> str:
    return f"hi {name}"


def pipeline(ctx: task.OrchestrationContext, names):
    greetings = yield task.when_all([ctx.call_activity(greet, input=n) for n in names])
    doubled = yield ctx.call_sub_orchestrator(double, input=len(greetings))
    yield ctx.create_timer(timedelta(milliseconds=100))
    event = yield ctx.wait_for_external_event("go")
    return {"greetings": greetings, "doubled": doubled, "event": event}


def double(ctx: task.OrchestrationContext, n: int):
    return n * 2


def countdown(ctx: task.OrchestrationContext, n: int):
    if n > 0:
        ctx.continue_as_new(n - 1)
        return None
    return "liftoff"


def fail_activity(ctx: task.ActivityContext, _):
    raise KeyError("missing")


def catches(ctx: task.OrchestrationContext, _):
    try:
        yield ctx.call_activity(fail_activity)
    except task.TaskFailedError as exc:
        return exc.details.error_type


def run_scenarios(address: str, start_worker) -> dict:
    """Drive every scenario and return what a user can observe of them."""
    start_worker(address, orchestrators=[pipeline, double, countdown, catches, counter_workflow],
                 activities=[greet, fail_activity], entities=[counter])
    c = dt_client.TaskHubGrpcClient(host_address=address)
    seen: dict = {}
    pid = c.schedule_new_orchestration(pipeline, input=["a", "b", "c"])
    c.wait_for_orchestration_start(pid, timeout=30)
    c.raise_orchestration_event(pid, "go", data={"ok": True})
    for name, instance_id in [
        ("pipeline", pid),
        ("countdown", c.schedule_new_orchestration(countdown, input=3)),
        ("catches", c.schedule_new_orchestration(catches)),
        ("counter-1", c.schedule_new_orchestration(counter_workflow, input="diff")),
    ]:
        state = c.wait_for_orchestration_completion(instance_id, timeout=30)
        seen[name] = (state.runtime_status.name, state.get_output())
    state = c.wait_for_orchestration_completion(c.schedule_new_orchestration(counter_workflow, input="diff"),
                                                timeout=30)
    seen["counter-2"] = (state.runtime_status.name, state.get_output())
    direct = entities.EntityInstanceId("counter", "direct")
    c.signal_entity(direct, "add", 100)
    c.signal_entity(direct, "subtract", 25)
    wait_until(lambda: (m := c.get_entity(direct)) and m.get_typed_state(int) == 75, message="75")
    seen["direct"] = c.get_entity(direct).get_typed_state(int)
    seen["missing entity"] = c.get_entity(entities.EntityInstanceId("counter", "nobody"))
    seen["missing instance"] = c.get_orchestration_state("no-such-instance")
    c.close()
    return seen


@pytest.fixture
def in_memory_address():
    server, address = serve_in_memory_backend()
    yield address
    server.stop(None)


def test_emulator_matches_in_memory_backend(in_memory_address, engine_emulator, start_worker):
    reference = run_scenarios(in_memory_address, start_worker)
    start_worker.stop_all()
    start_worker.workers.clear()
    ours = run_scenarios(engine_emulator.address, start_worker)
    assert ours == reference
    assert ours["counter-2"] == ("COMPLETED", "Counter 'diff' final value: 24")
