"""The schedules view's API: a real schedule made with the SDK's ScheduledTaskClient, as the page lists it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from durabletask import client as dt_client
from durabletask import entities, task
from durabletask.scheduled.client import ScheduledTaskClient
from durabletask.scheduled.models import ScheduleCreationOptions
from durabletask.worker import TaskHubGrpcWorker

from tests.dashboard.test_ops import request
from tests.helpers import InProcessEmulator, free_port, wait_until


def tick(ctx: task.OrchestrationContext, _):
    return "tick"


def tock(ctx: entities.EntityContext, _):
    """An entity whose ID sorts after every schedule's: a list that took more than schedules would show it."""
    ctx.set_state(1)


def get(port: int, path: str) -> tuple[int, dict]:
    status, _, body = request(port, "GET", path)
    return status, json.loads(body)


@pytest.fixture(scope="module")
def site():
    """An emulator on real time (a skipped clock would run an hourly schedule at once) and a schedules worker."""
    emu = InProcessEmulator(None, dashboard_port=free_port(), time_skipping=False).start()
    w = TaskHubGrpcWorker(host_address=emu.address)
    w.configure_scheduled_tasks()
    w.add_orchestrator(tick)
    w.add_entity(tock)
    w.start()
    c = dt_client.TaskHubGrpcClient(host_address=emu.address)
    try:
        yield emu, c, ScheduledTaskClient(c)
    finally:
        c.close()
        w.stop()
        emu.stop()


def test_a_schedule_shows_with_its_fields_and_its_last_instance(site):
    emu, c, schedules = site
    port = emu.server.options.dashboard_port
    schedule = schedules.create_schedule(ScheduleCreationOptions(
        schedule_id="hourly", orchestration_name="tick", orchestration_input={"n": 1},
        interval=timedelta(hours=1), start_immediately_if_late=True))

    def ran():
        status, page = get(port, "/api/hubs/default/schedules")
        assert status == 200, page
        return next((s for s in page["items"] if s["id"] == "hourly" and s["lastInstanceId"]), None)
    shown = wait_until(ran, timeout=30, message="the schedule's first run")
    assert shown["orchestration"] == "tick" and shown["interval"] == "01:00:00" and shown["status"] == "Active"
    assert shown["entityId"] == "@schedule@hourly"
    # The SDK counts intervals from the schedule's creation; the late first run went a moment after it.
    gap = datetime.fromisoformat(shown["nextRun"]) - datetime.fromisoformat(shown["lastRun"])
    assert timedelta(minutes=59) < gap <= timedelta(hours=1)
    started = c.get_orchestration_state(shown["lastInstanceId"])
    assert started is not None and started.name == "tick"
    status, one = get(port, "/api/hubs/default/schedule?id=hourly")
    assert status == 200 and one["schedule"]["input"] == json.dumps({"n": 1}) and one["schedule"]["status"] == "Active"

    schedule.pause()
    wait_until(lambda: get(port, "/api/hubs/default/schedule?id=hourly")[1]["schedule"]["status"] == "Paused",
               timeout=30, message="the pause")
    assert get(port, "/api/hubs/default/schedule?id=hourly")[1]["schedule"]["nextRun"] is None
    assert get(port, "/api/hubs/default/schedule?id=nothing") == (
        404, {"error": "no schedule 'nothing' in task hub 'default'"})


def test_schedules_come_in_pages_and_only_schedules(site):
    emu, c, schedules = site
    port = emu.server.options.dashboard_port
    for n in range(3):
        schedules.create_schedule(ScheduleCreationOptions(
            schedule_id=f"paged-{n}", orchestration_name="tick", interval=timedelta(hours=1),
            start_at=datetime.now().astimezone() + timedelta(days=1)))
    c.signal_entity(entities.EntityInstanceId("tock", "x"), "set")
    wait_until(lambda: c.get_entity(entities.EntityInstanceId("tock", "x")), timeout=30, message="the other entity")
    wait_until(lambda: len([s for s in get(port, "/api/hubs/default/schedules?page_size=200")[1]["items"]
                            if s["id"].startswith("paged-")]) == 3, timeout=30, message="three schedules")
    first = get(port, "/api/hubs/default/schedules?page_size=2&after=paged")[1]
    assert [s["id"] for s in first["items"]] == ["paged-0", "paged-1"] and first["next"] == "paged-1"
    second = get(port, "/api/hubs/default/schedules?page_size=2&after=paged-1")[1]
    assert [s["id"] for s in second["items"]] == ["paged-2"] and second["next"] is None
