"""The testing kit tells a test what it waits for: the unfinished-instance report, a marker it cannot honour,
a clock move it cannot make, and waiting for and reading an entity's state."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from durabletask import entities, task
from durabletask.worker import TaskHubGrpcWorker

from tests.helpers import ROOT, wait_until
from worker import counter

COUNTER = entities.EntityInstanceId("counter", "k")


def holds_the_counter(ctx: task.OrchestrationContext, _):
    """Locks the counter, then waits for an event nobody raises: the lock stays held."""
    with (yield ctx.lock_entities([COUNTER])):
        yield ctx.wait_for_external_event("release")


def wants_the_counter(ctx: task.OrchestrationContext, _):
    with (yield ctx.lock_entities([COUNTER])):
        return "got it"


def waits_a_day(ctx: task.OrchestrationContext, _):
    yield ctx.create_timer(timedelta(days=1))


def lock_owner(emulator) -> str | None:
    row = emulator.on_loop(lambda: emulator.backend.entity("default", str(COUNTER)))
    return row.lock_owner if row else None


def test_an_entity_lock_held_by_another_instance_is_named_with_its_holder(engine_emulator, engine_client, start_worker):
    start_worker(engine_emulator.address, orchestrators=[holds_the_counter, wants_the_counter], entities=[counter])
    engine_client.schedule_new_orchestration(holds_the_counter, instance_id="holder")
    wait_until(lambda: lock_owner(engine_emulator) == "holder", message="the holder's lock")
    engine_client.schedule_new_orchestration(wants_the_counter, instance_id="waiter")
    report = wait_until(lambda: (r := engine_emulator.unfinished()) and "instance 'waiter'" in r
                        and "the lock" in r and r, message="the waiter's lock request")
    assert ("instance 'waiter' (wants_the_counter, RUNNING, task hub 'default') waits for:\n"
            "  - the lock on entity '@counter@k', held by instance 'holder'") in report
    assert ("instance 'holder' (holds_the_counter, RUNNING, task hub 'default') waits for:\n"
            "  - nothing the scheduler can see: an external event, most likely") in report


def test_an_event_raised_under_another_name_is_listed(engine_emulator, engine_client, start_worker):
    start_worker(engine_emulator.address, orchestrators=[holds_the_counter], entities=[counter])
    engine_client.schedule_new_orchestration(holds_the_counter, instance_id="typo")
    wait_until(lambda: "an external event" in engine_emulator.unfinished(), message="the wait for the event")
    engine_client.raise_orchestration_event("typo", "relaese")
    assert wait_until(lambda: "events it received: 'relaese'" in engine_emulator.unfinished(),
                      message="the raised event")


def test_a_name_no_worker_serves_is_named(engine_emulator, engine_client):
    engine_client.schedule_new_orchestration("nobody_has_it", instance_id="orphan")
    assert ("  - no worker is connected to task hub 'default' to run orchestration 'nobody_has_it'"
            in engine_emulator.unfinished())
    w = TaskHubGrpcWorker(host_address=engine_emulator.address)
    w.add_orchestrator(waits_a_day)
    w.use_work_item_filters()  # it tells the emulator the names it serves
    w.start()
    try:
        assert wait_until(lambda: "no connected worker has registered orchestration 'nobody_has_it' (1 connected"
                          in engine_emulator.unfinished(), message="the worker's filters")
    finally:
        w.stop()


def test_advance_refuses_what_the_clock_cannot_hold_and_leaves_it(engine_emulator, engine_client):
    before = engine_emulator.backend.clock.skipped
    with pytest.raises(ValueError, match="goes up to 9999-12-31"):
        engine_emulator.advance(timedelta(days=3_000_000))
    with pytest.raises(ValueError, match="goes up to 9999-12-31"):
        engine_emulator.advance(float("inf"))
    assert engine_emulator.backend.clock.skipped == before
    assert engine_emulator.now().year < 9999
    engine_client.schedule_new_orchestration(waits_a_day, instance_id="after")
    assert [s.instance_id for s in engine_client.get_all_orchestration_states()] == ["after"]


def test_waiting_for_and_reading_an_entity(engine_emulator, engine_client, start_worker):
    start_worker(engine_emulator.address, entities=[counter])
    engine_client.signal_entity(COUNTER, "add", 5)
    assert engine_emulator.wait_for_entity(COUNTER, lambda value: value == 5) == 5
    assert engine_emulator.entity_state("@counter@k", int) == 5
    assert engine_emulator.entity_state("@counter@nobody") is None
    with pytest.raises(TypeError, match="is a int, not a str"):
        engine_emulator.entity_state(COUNTER, str)
    with pytest.raises(TimeoutError) as waited:
        engine_emulator.wait_for_entity(COUNTER, lambda value: value == 6, timeout=0.2)
    assert "entity '@counter@k' did not reach the state waited for within 0.2s; its state: 5" in str(waited.value)
    assert "0 operation(s) wait in its inbox" in str(waited.value)


# -- through pytest, as a user's test suite meets it -------------------------------------------

ONE_DAY_TIMER = '''
from datetime import timedelta

import pytest
from durabletask import task
from durabletask.client import TaskHubGrpcClient
from durabletask.worker import TaskHubGrpcWorker


def waits_a_day(ctx: task.OrchestrationContext, _):
    yield ctx.create_timer(timedelta(days=1))


@pytest.fixture
def worker(dts_emulator):
    w = TaskHubGrpcWorker(host_address=dts_emulator.address)
    w.add_orchestrator(waits_a_day)
    w.start()
    yield w
    w.stop()


def test_forgot_time_skipping(dts_emulator, worker):
    client = TaskHubGrpcClient(host_address=dts_emulator.address)
    instance_id = client.schedule_new_orchestration(waits_a_day, instance_id="reminder-1")
    client.wait_for_orchestration_completion(instance_id, timeout=3)


@pytest.fixture(scope="session")
def session_endpoint(dts_emulator_server):
    return dts_emulator_server.endpoint


@pytest.mark.dts_emulator(time_skipping=True)
def test_marker_without_the_fixture(session_endpoint):
    pass
'''


@pytest.mark.slow
def test_through_pytest_a_timed_out_wait_names_the_timer_and_the_flag_and_a_lost_marker_is_an_error(tmp_path):
    (tmp_path / "test_user.py").write_text(ONE_DAY_TIMER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTEST_ADDOPTS", None)
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "emulator.pytest_plugin", "-p", "no:cacheprovider",
                             "-q", "test_user.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "1 failed, 1 error" in out
    assert "TimeoutError" in out and "dts_emulator: unfinished instances" in out
    assert "instance 'reminder-1' (waits_a_day, RUNNING, task hub 'default') waits for:" in out
    assert "  - a timer due " in out and ", 23h 59min ahead on the emulator's clock; time skipping is off:" in out
    assert ("test_marker_without_the_fixture: @pytest.mark.dts_emulator(...) applies to the dts_emulator fixture, "
            "which this test does not use") in out
    assert Path(tmp_path / "test_user.py").exists()
