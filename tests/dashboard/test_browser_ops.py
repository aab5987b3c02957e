"""The dashboard's operator actions in Chromium: start (scheduled), rewind, bulk purge, workers, schedules."""

from __future__ import annotations

import os
import re
import sys
from datetime import datetime, timedelta

import pytest
from durabletask import client as dt_client
from durabletask import entities, task
from durabletask.scheduled.client import ScheduledTaskClient
from durabletask.scheduled.models import ScheduleCreationOptions
from durabletask.worker import TaskHubGrpcWorker

from tests.helpers import ROOT, InProcessEmulator, Process, free_port

pytestmark = pytest.mark.slow  # a browser

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = playwright_api.expect
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
if not os.path.exists(CHROMIUM):
    pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)", allow_module_level=True)

FLAKY_CALLS: list[int] = []


def flaky_step(ctx: task.ActivityContext, _) -> str:
    """Fails the first time it runs, works after: what a rewind is for."""
    FLAKY_CALLS.append(1)
    if len(FLAKY_CALLS) == 1:
        raise RuntimeError("the first attempt fails")
    return "worked"


def flaky(ctx: task.OrchestrationContext, _):
    return (yield ctx.call_activity(flaky_step))


def greet(ctx: task.OrchestrationContext, name):
    return f"hello {name}"


def tick(ctx: task.OrchestrationContext, _):
    return "tick"


WORKER = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from durabletask.scheduled.client import ScheduledTaskClient
from durabletask.scheduled.models import ScheduleCreationOptions
from durabletask.worker import TaskHubGrpcWorker
import worker
w = TaskHubGrpcWorker(host_address=sys.argv[1])
worker.register(w)
w.use_work_item_filters()
w.start()
print("worker ready", flush=True)
while True:
    time.sleep(3600)
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    emu = InProcessEmulator(None, dashboard_port=free_port(), time_skipping=False).start()
    w = TaskHubGrpcWorker(host_address=emu.address)
    w.add_orchestrator(flaky)
    w.add_orchestrator(greet)
    w.add_orchestrator(tick)
    w.add_activity(flaky_step)
    w.configure_scheduled_tasks()
    w.start()
    c = dt_client.TaskHubGrpcClient(host_address=emu.address)
    try:
        yield emu, c
    finally:
        c.close()
        w.stop()
        emu.stop()


def test_start_with_a_scheduled_time_and_see_it_run(site, page):
    emu, c = site
    page.goto(emu.dashboard + "/hubs/default/instances")
    page.click("summary:has-text('Start an orchestration')")
    form = page.locator("#start-form")
    form.locator("[name=name]").fill("greet")
    form.locator("[name=input]").fill('"not json')
    form.locator("[name=instanceId]").fill("scheduled-1")
    form.locator("button[type=submit]").click()
    expect(form.locator(".error")).to_have_text("The input is not valid JSON")
    expect(form.locator("[name=instanceId]")).to_have_value("scheduled-1")  # what the user typed stays
    form.locator("[name=input]").fill('"world"')
    start_at = (datetime.now() + timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%S")
    form.locator("[name=scheduledStart]").fill(start_at)
    form.locator("[name=tags]").fill('{"team": "ops"}')
    form.locator("button[type=submit]").click()
    expect(page.locator("h1")).to_have_text("scheduled-1")
    state = c.get_orchestration_state("scheduled-1")
    assert state.runtime_status == dt_client.OrchestrationStatus.PENDING  # not before its time
    assert emu.on_loop(lambda: emu.backend.instance("default", "scheduled-1")).scheduled_start is not None
    assert emu.on_loop(lambda: emu.backend.instance("default", "scheduled-1")).tags == {"team": "ops"}
    done = c.wait_for_orchestration_completion("scheduled-1", timeout=60)
    assert done.serialized_output == '"hello world"'
    page.reload()
    expect(page.locator("#status")).to_have_text("COMPLETED")


def test_rewind_a_failed_instance(site, page):
    emu, c = site
    FLAKY_CALLS.clear()
    c.schedule_new_orchestration(flaky, instance_id="flaky-1")
    failed = c.wait_for_orchestration_completion("flaky-1", timeout=60)
    assert failed.runtime_status == dt_client.OrchestrationStatus.FAILED
    page.goto(emu.dashboard + "/hubs/default/instance?id=flaky-1")
    expect(page.locator("#status")).to_have_text("FAILED")
    page.click("button:has-text('Rewind')")
    done = c.wait_for_orchestration_completion("flaky-1", timeout=60)
    assert done.runtime_status == dt_client.OrchestrationStatus.COMPLETED
    assert done.serialized_output == '"worked"'
    assert any("Rewind flaky-1" in d for d in page.dialogs)


def test_bulk_purge_a_filtered_set_and_see_the_count(site, page):
    emu, c = site
    for n in range(3):
        c.schedule_new_orchestration(greet, input=str(n), instance_id=f"bulk-{n}")
        c.wait_for_orchestration_completion(f"bulk-{n}", timeout=60)
    c.schedule_new_orchestration(greet, input="x", instance_id="kept-1")
    c.wait_for_orchestration_completion("kept-1", timeout=60)
    page.goto(emu.dashboard + "/hubs/default/instances?status=COMPLETED&q=bulk-")
    expect(page.locator("tr[data-instance]")).to_have_count(3)
    page.select_option("[name=bulk-action]", "purge")
    page.click("button:has-text('Apply to all matching the filter')")
    expect(page.locator(".notice")).to_have_text("purge: 3 instance(s).")
    assert any(d.startswith("purge 3 instance(s)?") for d in page.dialogs)
    assert all(c.get_orchestration_state(f"bulk-{n}") is None for n in range(3))
    assert c.get_orchestration_state("kept-1") is not None


def test_workers_view_shows_a_worker_and_then_its_drop(site, page):
    emu, _ = site
    worker = Process([sys.executable, "-c", WORKER, emu.address])
    try:
        worker.wait_for_line("worker ready", timeout=60)
        page.goto(emu.dashboard + "/hubs/default/workers?refresh=1")
        registered = page.locator("#workers td.registered").filter(has_text="counter_workflow")
        expect(registered).to_have_count(1, timeout=30_000)
        expect(registered).to_contain_text("entities: account, audit, counter")
    finally:
        worker.signal(9)
        worker.wait()
    expect(page.locator("#gone tr[data-stream]").filter(has_text="counter_workflow")).to_have_count(1, timeout=60_000)


def test_schedules_view_shows_a_schedule_and_links_its_run_and_entity(site, page):
    emu, c = site
    ScheduledTaskClient(c).create_schedule(ScheduleCreationOptions(
        schedule_id="nightly", orchestration_name="tick", interval=timedelta(hours=24),
        start_immediately_if_late=True))
    # As Aspire links it: the official dashboard's path for the hub's schedules.
    page.goto(emu.dashboard + "/subscriptions/local/schedulers/emulator/taskhubs/default/schedules?refresh=1")
    row = page.locator("#schedules tr[data-schedule='nightly']")
    expect(row).to_contain_text("tick")
    expect(row.locator("td.interval")).to_have_text("1.00:00:00")  # as the SDK stores it (.NET TimeSpan)
    expect(row).to_contain_text("Active")
    run = row.locator("a[href*='/instance?id=nightly-']")  # the first run, once it has started (auto-refresh)
    expect(run).to_have_count(1, timeout=30_000)
    row.locator("a", has_text="nightly").first.click()
    expect(page.locator("h1")).to_have_text("Schedule nightly")
    page.click("#schedule a:has-text('@schedule@nightly')")
    expect(page.locator("h1")).to_have_text("schedule / nightly")


def test_auto_refresh_keeps_a_half_filled_start_form_and_the_selection(site, page):
    emu, c = site
    c.schedule_new_orchestration(greet, input="a", instance_id="kept-selected")
    c.wait_for_orchestration_completion("kept-selected", timeout=60)
    page.goto(emu.dashboard + "/hubs/default/instances?refresh=1")
    page.check("tr[data-instance='kept-selected'] input.select")
    page.click("summary:has-text('Start an orchestration')")
    form = page.locator("#start-form")
    form.locator("[name=name]").fill("greet")
    form.locator("[name=input]").fill('{"half": ')  # still typing: the cursor is in this field
    # A refresh re-renders the list: an instance started now shows only through one.
    c.schedule_new_orchestration(greet, input="b", instance_id="arrived-later")
    expect(page.locator("tr[data-instance='arrived-later']")).to_have_count(1, timeout=30_000)
    page.wait_for_function("Number(document.getElementById('main').dataset.refreshes) >= 1")
    form = page.locator("#start-form")
    expect(form).to_be_visible()  # the panel stays open
    expect(form.locator("[name=name]")).to_have_value("greet")
    expect(form.locator("[name=input]")).to_have_value('{"half": ')
    expect(form.locator("[name=input]")).to_be_focused()
    expect(page.locator("tr[data-instance='kept-selected'] input.select")).to_be_checked()
    expect(page.locator("tr[data-instance='arrived-later'] input.select")).not_to_be_checked()


def test_read_only_disables_every_action_and_says_why(page):
    with InProcessEmulator(None, dashboard_port=free_port(), dashboard_read_only=True) as emu:
        emu.on_loop(lambda: emu.backend.create_instance("default", "ro-1", "greet"))
        c = dt_client.TaskHubGrpcClient(host_address=emu.address)
        try:
            c.signal_entity(entities.EntityInstanceId("counter", "ro"), "add", 1)  # queued: no worker here
        finally:
            c.close()
        why = "--dashboard-read-only"
        page.goto(emu.dashboard + "/hubs/default/instance?id=ro-1")
        expect(page.locator("#read-only")).to_be_visible()
        buttons = page.locator(".actions button")
        expect(buttons).to_have_count(6)
        for n in range(6):
            expect(buttons.nth(n)).to_be_disabled()
            expect(buttons.nth(n)).to_have_attribute("title", re.compile(why))
        expect(page.locator("button:has-text('Raise event')")).to_be_disabled()
        page.goto(emu.dashboard + "/hubs/default/instances")
        expect(page.locator("#start-form button[type=submit]")).to_be_disabled()
        expect(page.locator("#start-form [name=name]")).to_have_attribute("title", re.compile(why))
        expect(page.locator("button:has-text('Apply to selected')")).to_be_disabled()
        expect(page.get_by_role("button", name="Filter", exact=True)).to_be_enabled()  # reading and filtering stay
        page.goto(emu.dashboard + "/hubs/default/entity?id=@counter@ro")
        expect(page.locator("button:has-text('Signal')")).to_be_disabled()
