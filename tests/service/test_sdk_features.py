"""Scheduled tasks, work-item filters, the async client, and the DTS-flavoured SDK classes.

(Many waiting clients: tests/engine/test_concurrency.py.)
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from durabletask import client as dt_client
from durabletask import entities, task
from durabletask.azuremanaged.client import AsyncDurableTaskSchedulerClient, DurableTaskSchedulerClient
from durabletask.azuremanaged.worker import DurableTaskSchedulerWorker
from durabletask.scheduled.client import ScheduledTaskClient
from durabletask.scheduled.models import ScheduleCreationOptions
from durabletask.worker import TaskHubGrpcWorker

from tests.helpers import wait_until
from worker import counter, counter_workflow


def tick(ctx: task.OrchestrationContext, key: str):
    ctx.signal_entity(entities.EntityInstanceId("counter", key), "add", 1)
    return "tick"


@pytest.mark.slow
def test_scheduled_task_runs_its_orchestration_repeatedly(emulator, client, uid):
    w = TaskHubGrpcWorker(host_address=emulator.address)
    w.configure_scheduled_tasks()
    w.add_orchestrator(tick)
    w.add_entity(counter)
    w.start()
    try:
        schedules = ScheduledTaskClient(client)
        schedule = schedules.create_schedule(ScheduleCreationOptions(
            schedule_id=f"s-{uid}", orchestration_name="tick", orchestration_input=uid,
            interval=timedelta(seconds=1)))
        eid = entities.EntityInstanceId("counter", uid)
        wait_until(lambda: (m := client.get_entity(eid)) and m.get_typed_state(int) >= 2, timeout=30,
                   message="two scheduled runs")
        schedule.delete()
    finally:
        w.stop()


def test_work_item_filters_route_by_name(emulator, client, start_worker, uid):
    """A worker that serves only the counter entity never receives orchestrations."""
    entity_only = TaskHubGrpcWorker(host_address=emulator.address)
    entity_only.add_entity(counter)
    entity_only.use_work_item_filters()  # generated from what it registered: the counter only
    entity_only.start()
    start_worker.workers.append(entity_only)
    instance_id = client.schedule_new_orchestration(counter_workflow, input=uid)
    client.signal_entity(entities.EntityInstanceId("counter", uid), "add", 1)
    wait_until(lambda: (m := client.get_entity(entities.EntityInstanceId("counter", uid)))
               and m.get_typed_state(int) == 1, message="entity served by the filtered worker")
    assert client.get_orchestration_state(instance_id).runtime_status == dt_client.OrchestrationStatus.PENDING
    orchestration_only = TaskHubGrpcWorker(host_address=emulator.address)
    orchestration_only.add_orchestrator(counter_workflow)
    orchestration_only.use_work_item_filters()
    orchestration_only.start()
    start_worker.workers.append(orchestration_only)
    state = client.wait_for_orchestration_completion(instance_id, timeout=30)
    assert state.get_output() == f"Counter '{uid}' final value: 13"


def test_dts_worker_and_clients_sync_and_async(emulator, uid):
    worker = DurableTaskSchedulerWorker(host_address=emulator.endpoint, taskhub="default",
                                        token_credential=None, secure_channel=False)
    worker.add_entity(counter)
    worker.add_orchestrator(counter_workflow)
    worker.start()
    try:
        sync_client = DurableTaskSchedulerClient(host_address=emulator.endpoint, taskhub="default",
                                                 token_credential=None, secure_channel=False)
        instance_id = sync_client.schedule_new_orchestration(counter_workflow, input=uid)
        assert sync_client.wait_for_orchestration_completion(instance_id, timeout=30).get_output() \
            == f"Counter '{uid}' final value: 12"

        async def run_async():
            c = AsyncDurableTaskSchedulerClient(host_address=emulator.endpoint, taskhub="default",
                                                token_credential=None, secure_channel=False)
            iid = await c.schedule_new_orchestration(counter_workflow, input=uid)
            state = await c.wait_for_orchestration_completion(iid, timeout=30)
            meta = await c.get_entity(entities.EntityInstanceId("counter", uid))
            await c.close()
            return state.get_output(), meta.get_typed_state(int)

        assert asyncio.run(run_async()) == (f"Counter '{uid}' final value: 24", 24)
    finally:
        worker.stop()
