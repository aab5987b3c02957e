"""Time skipping: timers, delayed signals, scheduled starts and event timeouts on the emulator's own clock.

Through the package's ``dts_emulator`` fixture (its plugin, loaded by conftest.py), a real SDK
worker and client on loopback. Nothing here waits a wall-clock hour: with skipping, the clock
jumps; without it, the test checks that nothing moved while the emulator sat idle.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from durabletask import client as dt_client
from durabletask import entities, task

from dts_emulator import events as ev
from dts_emulator.testing import Emulator
from tests.helpers import Emulator as EmulatorProcess
from tests.helpers import wait_until

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def sleeps_a_day(ctx: task.OrchestrationContext, _):
    """Returns its clock before and after a one-day durable timer."""
    before = ctx.current_utc_datetime
    yield ctx.create_timer(DAY)
    return [before.isoformat(), ctx.current_utc_datetime.isoformat()]


def approval_or_timeout(ctx: task.OrchestrationContext, _):
    """wait_for_external_event with a one-day timeout: the usual when_any of the event and a timer."""
    approval = ctx.wait_for_external_event("approve")
    deadline = ctx.create_timer(DAY)
    winner = yield task.when_any([approval, deadline])
    return "timed out" if winner == deadline else f"approved: {approval.get_result()}"


def signals_later_then_reads(ctx: task.OrchestrationContext, key: str):
    """A signal delivered an hour from now, a two-hour timer, then the entity's value."""
    counter = entities.EntityInstanceId("tally", key)
    ctx.signal_entity(counter, "add", 7, signal_time=ctx.current_utc_datetime + HOUR)
    yield ctx.create_timer(2 * HOUR)
    return (yield ctx.call_entity(counter, "get"))


def tally(ctx: entities.EntityContext, value=None):
    current = ctx.get_state(int, 0)
    if ctx.operation == "add":
        ctx.set_state(current + value)
    return ctx.get_state(int, 0)


def started_at(ctx: task.OrchestrationContext, _):
    return ctx.current_utc_datetime.isoformat()


@pytest.fixture
def kit(dts_emulator, start_worker):
    """A worker with this module's functions, and a client, on the test's emulator."""
    start_worker(dts_emulator.address, orchestrators=[sleeps_a_day, approval_or_timeout, signals_later_then_reads,
                                                      started_at], entities=[tally])
    c = dt_client.TaskHubGrpcClient(host_address=dts_emulator.address)
    yield dts_emulator, c
    c.close()


def completed(c: dt_client.TaskHubGrpcClient, instance_id: str) -> dt_client.OrchestrationState:
    state = c.wait_for_orchestration_completion(instance_id, timeout=30)
    assert state.runtime_status == dt_client.OrchestrationStatus.COMPLETED, state.failure_details
    return state


def output(state: dt_client.OrchestrationState):
    import json

    return json.loads(state.serialized_output)


def idle_with_a_due_time(emu: Emulator) -> bool:
    """Nothing leased, nothing ready, something due later, and a worker stream asleep: skipping could happen now."""
    def check() -> bool:
        d = emu.backend.dispatch
        return not d.leases_held() and not d.any_ready() and d.next_due() is not None and d.sleeping() > 0

    return emu.on_loop(check)


@pytest.mark.dts_emulator(time_skipping=True)
def test_a_one_day_timer_fires_at_once_and_the_orchestration_sees_the_day_pass(kit):
    emu, c = kit
    wall_before = datetime.now(timezone.utc)
    state = completed(c, c.schedule_new_orchestration(sleeps_a_day))
    before, after = (datetime.fromisoformat(t) for t in output(state))
    assert after - before >= DAY
    assert emu.backend.clock.skipped >= DAY.total_seconds() - 1
    assert emu.now() - wall_before >= DAY
    # What the emulator stamped is on its clock: the episode after the timer started a day after the first.
    history = [ev.parse(blob) for blob in emu.on_loop(lambda: emu.backend.history(emu.taskhub, state.instance_id))]
    episodes = [e.timestamp.ToDatetime(timezone.utc) for e in history if e.HasField("orchestratorStarted")]
    fire_at = next(e for e in history if e.HasField("timerFired")).timerFired.fireAt.ToDatetime(timezone.utc)
    assert len(episodes) == 2 and episodes[-1] >= fire_at and episodes[-1] - episodes[0] >= DAY
    assert state.last_updated_at.replace(tzinfo=timezone.utc) - wall_before >= DAY


@pytest.mark.dts_emulator(time_skipping=True)
def test_a_delayed_signal_from_a_client_arrives_after_an_hour_of_emulator_time(kit):
    emu, c = kit
    counter = entities.EntityInstanceId("tally", "client-delayed")
    due = emu.now() + HOUR
    c.signal_entity(counter, "add", 5, signal_time=due)
    entity = wait_until(lambda: c.get_entity(counter), timeout=10, message="the delayed signal applied")
    assert entity.get_state(int) == 5
    assert entity.last_modified.replace(tzinfo=timezone.utc) >= due  # stamped on the emulator's clock
    assert emu.backend.clock.skipped >= HOUR.total_seconds() - 1


@pytest.mark.dts_emulator(time_skipping=True)
def test_a_delayed_signal_from_an_orchestration_is_delivered_before_a_later_timer(kit):
    emu, c = kit
    state = completed(c, c.schedule_new_orchestration(signals_later_then_reads, input="orch-delayed"))
    assert output(state) == 7
    assert emu.backend.clock.skipped >= 2 * HOUR.total_seconds() - 1


@pytest.mark.dts_emulator(time_skipping=True)
def test_a_scheduled_start_a_day_ahead_starts_at_once_on_the_emulators_clock(kit):
    emu, c = kit
    start_at = emu.now() + DAY
    state = completed(c, c.schedule_new_orchestration(started_at, start_at=start_at))
    assert datetime.fromisoformat(output(state)).replace(tzinfo=timezone.utc) >= start_at  # the SDK's is naive UTC


@pytest.mark.dts_emulator(time_skipping=True)
def test_wait_for_external_event_times_out_after_a_skipped_day(kit):
    emu, c = kit
    state = completed(c, c.schedule_new_orchestration(approval_or_timeout))
    assert output(state) == "timed out"
    assert emu.backend.clock.skipped >= DAY.total_seconds() - 1


@pytest.mark.dts_emulator(time_skipping=True)
def test_an_event_raised_while_skipping_is_paused_beats_the_timeout(kit):
    """The README's recipe for "the event arrives before the timeout", line for line."""
    dts_emulator, client = kit
    dts_emulator.time_skipping = False
    instance_id = client.schedule_new_orchestration(approval_or_timeout)
    wait_until(lambda: idle_with_a_due_time(dts_emulator), timeout=10, message="the orchestration waiting on its timer")
    client.raise_orchestration_event(instance_id, "approve", data="yes")
    dts_emulator.time_skipping = True
    assert output(completed(client, instance_id)) == "approved: yes"


def test_without_time_skipping_an_idle_emulator_keeps_the_wall_clock(kit):
    emu, c = kit
    assert not emu.time_skipping
    instance_id = c.schedule_new_orchestration(sleeps_a_day)
    wait_until(lambda: idle_with_a_due_time(emu), timeout=10, message="the orchestration waiting on its timer")
    # The worker's stream went back to sleep with the timer due: with skipping, the clock would have jumped here.
    assert emu.backend.clock.skipped == 0
    assert c.get_orchestration_state(instance_id).runtime_status == dt_client.OrchestrationStatus.RUNNING
    # A test may still move the clock itself.
    emu.advance(DAY)
    before, after = (datetime.fromisoformat(t) for t in output(completed(c, instance_id)))
    assert after - before >= DAY
    assert emu.backend.clock.skipped == pytest.approx(DAY.total_seconds())


def test_each_emulator_has_a_clock_of_its_own(start_worker):
    with Emulator(time_skipping=True) as skipping, Emulator() as plain:
        for emu in (skipping, plain):
            start_worker(emu.address, orchestrators=[sleeps_a_day])
        clients = [dt_client.TaskHubGrpcClient(host_address=emu.address) for emu in (skipping, plain)]
        try:
            ids = [c.schedule_new_orchestration(sleeps_a_day) for c in clients]
            completed(clients[0], ids[0])
            wait_until(lambda: idle_with_a_due_time(plain), timeout=10, message="the other emulator's timer waiting")
            assert skipping.backend.clock.skipped >= DAY.total_seconds() - 1
            assert plain.backend.clock.skipped == 0
            assert clients[1].get_orchestration_state(ids[1]).runtime_status == \
                dt_client.OrchestrationStatus.RUNNING
        finally:
            for c in clients:
                c.close()


@pytest.fixture(scope="module")
def module_worker(dts_emulator_server):
    """A worker that outlives the tests (the README's advice): it stays connected through each test's reset."""
    from durabletask.worker import TaskHubGrpcWorker

    w = TaskHubGrpcWorker(host_address=dts_emulator_server.address)
    w.add_orchestrator(sleeps_a_day)
    w.start()
    yield w
    w.stop()


@pytest.mark.parametrize("run", ["first", "second"])
@pytest.mark.dts_emulator(time_skipping=True)
def test_a_worker_may_outlive_a_test_while_each_test_starts_empty(module_worker, dts_emulator, run):
    c = dt_client.TaskHubGrpcClient(host_address=dts_emulator.address)
    try:
        assert c.get_orchestration_state("same-id") is None  # the first run's instance is gone in the second
        before, after = (datetime.fromisoformat(t) for t in output(completed(
            c, c.schedule_new_orchestration(sleeps_a_day, instance_id="same-id"))))
        assert after - before >= DAY
    finally:
        c.close()


def test_the_clock_only_moves_forward(dts_emulator):
    with pytest.raises(ValueError, match="only moves forward"):
        dts_emulator.advance(-1)
    with pytest.raises(ValueError, match="only moves forward"):
        dts_emulator.advance(float("nan"))


@pytest.mark.dts_emulator(time_skipping=True)
def test_each_test_starts_empty_and_on_the_wall_clock(dts_emulator):
    """The fixture resets the session's emulator: what a test left (instances, skipped time) is gone."""
    dts_emulator.advance(DAY)
    c = dt_client.TaskHubGrpcClient(host_address=dts_emulator.address)
    try:
        instance_id = c.schedule_new_orchestration("nobody-serves-this")
        assert c.get_orchestration_state(instance_id) is not None
        dts_emulator.reset()
        assert dts_emulator.backend.clock.skipped == 0 and not dts_emulator.time_skipping
        assert c.get_orchestration_state(instance_id) is None
    finally:
        c.close()


def test_the_command_line_flag_skips_time_in_an_emulator_process(start_worker):
    """`python -m dts_emulator --time-skipping`: for workers that cannot live in the test's process."""
    emu = EmulatorProcess(None, extra=("--time-skipping",)).start()
    try:
        assert "time:          skipping (--time-skipping)" in emu.process.output
        start_worker(emu.address, orchestrators=[sleeps_a_day])
        c = dt_client.TaskHubGrpcClient(host_address=emu.address)
        try:
            before, after = (datetime.fromisoformat(t) for t in output(completed(c, c.schedule_new_orchestration(
                sleeps_a_day))))
        finally:
            c.close()
        assert after - before >= DAY
    finally:
        assert emu.stop() == 0
