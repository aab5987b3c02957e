"""The engine's concurrency: waiting clients cost no thread and cannot starve workers, admission is
bounded and explicit, waiters wake per instance, and a frozen worker loses its work to the others."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from durabletask import client as dt_client
from durabletask import entities
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

from tests.helpers import InProcessEmulator, Process, entity_backlog, entity_value, start_slow_worker, wait_until
from worker import counter, counter_workflow

# More waiters than any thread pool a gRPC server keeps (the old emulator had 64 threads).
WAITERS = 500


def _hold_waits(address: str, prefix: str, count: int) -> Process:
    """A process of ``count`` clients waiting on PREFIX-0.. at once (see waiting_clients.py)."""
    return Process([sys.executable, "tests/waiting_clients.py", address, prefix, str(count)])


def _park(client, prefix: str, count: int) -> list[str]:
    """Instances that stay PENDING during the test: they are scheduled to start in an hour."""
    start_at = datetime.now(timezone.utc) + timedelta(hours=1)
    return [client.schedule_new_orchestration("parked", instance_id=f"{prefix}-{i}", start_at=start_at)
            for i in range(count)]


@pytest.mark.slow
def test_waiting_clients_do_not_starve_a_worker_that_connects_after_them(engine_emulator, start_worker):
    emu = engine_emulator
    client = dt_client.TaskHubGrpcClient(host_address=emu.address)
    parked = _park(client, "parked", WAITERS)
    waiters = _hold_waits(emu.address, "parked", WAITERS)
    try:
        wait_until(lambda: emu.backend.waiting == WAITERS, timeout=60, message=f"{WAITERS} waits at the server")
        start_worker(emu.address, orchestrators=[counter_workflow], entities=[counter])
        instance_id = client.schedule_new_orchestration(counter_workflow, input="starved?")
        state = client.wait_for_orchestration_completion(instance_id, timeout=30)
        assert state.runtime_status == dt_client.OrchestrationStatus.COMPLETED
        assert state.get_output() == "Counter 'starved?' final value: 12"
        assert emu.backend.waiting == WAITERS  # they were still waiting all along
        assert not [line for line in waiters.lines if line.startswith(("ended", "failed"))]
        for instance_id in parked[:3]:
            client.terminate_orchestration(instance_id)
        for instance_id in parked[:3]:  # each waiter learns of its own instance's end
            waiters.wait_for_line(rf"^ended {instance_id} ORCHESTRATION_STATUS_TERMINATED$", timeout=30)
        assert emu.backend.waiting == WAITERS - 3
    finally:
        waiters.stop()
        client.close()
    wait_until(lambda: emu.backend.waiting == 0, message="the waits of the stopped clients released")
    assert emu.backend.watched == 0  # nothing kept for instances that nobody waits on any more


def test_waits_beyond_the_limit_are_refused_at_once_and_others_carry_on():
    emu = InProcessEmulator(None, max_waiters=20).start()
    client = dt_client.TaskHubGrpcClient(host_address=emu.address)
    waiters = None
    try:
        _park(client, "limit", 21)
        waiters = _hold_waits(emu.address, "limit", 21)
        refused = waiters.wait_for_line(r"^failed (limit-\d+) (\w+) (.*)$", timeout=60)
        assert refused.group(2) == "RESOURCE_EXHAUSTED"
        assert "--max-waiters" in refused.group(3) and "20" in refused.group(3)
        wait_until(lambda: emu.backend.waiting == 20, message="the 20 admitted waits")
        client.signal_entity(entities.EntityInstanceId("counter", "limit"), "add", 1)  # other calls still answer
        admitted = next(f"limit-{i}" for i in range(21) if f"limit-{i}" != refused.group(1))
        client.terminate_orchestration(admitted)
        waiters.wait_for_line(rf"^ended {admitted} ORCHESTRATION_STATUS_TERMINATED$", timeout=30)
        assert len([line for line in waiters.lines if line.startswith("failed")]) == 1
    finally:
        if waiters is not None:
            waiters.stop()
        client.close()
        emu.stop()


def test_a_change_wakes_only_the_clients_waiting_on_that_instance(engine_emulator):
    emu = engine_emulator
    backend = emu.backend
    for instance_id in ("watched", "other"):
        emu.on_loop(lambda i=instance_id: backend.create_instance("default", i, "nobody_serves_this"))
    checks = {"watched": 0, "other": 0}

    def counted(instance_id: str):
        def started(row) -> bool:
            checks[instance_id] += 1
            return row.status != pb.ORCHESTRATION_STATUS_PENDING
        return started

    async def start_waiters():
        on_watched = [asyncio.ensure_future(backend.wait_for("default", "watched", counted("watched"), 30))
                      for _ in range(50)]
        on_other = asyncio.ensure_future(backend.wait_for("default", "other", counted("other"), 30))
        return on_watched, on_other

    on_watched, on_other = emu.call(start_waiters())
    wait_until(lambda: backend.waiting == 51, message="51 waiters")
    assert checks == {"watched": 50, "other": 1}  # each looked once
    emu.on_loop(lambda: _touch(backend, "other"))  # a change to another watched instance...
    wait_until(on_other.done, message="the other instance's waiter")
    assert checks == {"watched": 50, "other": 2}  # ...woke its own waiter and none of the 50
    emu.on_loop(lambda: _touch(backend, "watched"))
    wait_until(lambda: all(w.done() for w in on_watched), message="the watched instance's waiters")
    assert checks["watched"] == 100  # each looked once more, and returned


def _touch(backend, instance_id: str) -> None:
    """Move an instance out of PENDING, as a worker's first completion would."""
    with backend.tx():
        row = backend.store.get_instance("default", instance_id)
        row.status = pb.ORCHESTRATION_STATUS_RUNNING
        backend.store.put_instance(row)
        backend.notify_changed("default", instance_id)


SIGNALS = 200
KEYS = 5


@pytest.mark.slow
def test_a_frozen_worker_loses_its_work_to_the_others_and_its_late_answers_are_refused(caplog):
    caplog.set_level(logging.INFO, logger="dts_emulator")
    emu = InProcessEmulator(None, liveness_timeout=2).start()
    client = dt_client.TaskHubGrpcClient(host_address=emu.address)
    frozen = healthy = None
    try:
        frozen = start_slow_worker(emu.address, lambda: emu.backend.dispatch.streams_opened)
        ids = [entities.EntityInstanceId("slow_counter", f"frozen-{i}") for i in range(KEYS)]
        for n in range(SIGNALS):
            client.signal_entity(ids[n % KEYS], "add", 1)
        wait_until(lambda: emu.backend.dispatch.leases_held() > 0, message="the worker to hold work")
        os.kill(frozen.proc.pid, signal.SIGSTOP)
        held = emu.backend.dispatch.leases_held()
        assert held > 0  # the precondition: it froze while holding work
        healthy = start_slow_worker(emu.address, lambda: emu.backend.dispatch.streams_opened)
        wait_until(lambda: all(entity_value(client, i) == SIGNALS // KEYS for i in ids), timeout=60,
                   message="every signal applied by the healthy worker")
        assert any("ended holding" in r.getMessage() for r in caplog.records)
        streams = emu.backend.dispatch.streams_opened
        os.kill(frozen.proc.pid, signal.SIGCONT)
        wait_until(lambda: emu.backend.dispatch.streams_opened > streams, timeout=30,
                   message="the thawed worker to reconnect")
        assert [entity_value(client, i) for i in ids] == [SIGNALS // KEYS] * KEYS  # nothing applied twice
        assert all(entity_backlog(client, i) == 0 for i in ids)
    finally:
        for p in (frozen, healthy):
            if p is not None:
                p.signal(signal.SIGCONT)
                p.stop()
        client.close()
        emu.stop()


def test_worker_streams_beyond_the_limit_are_refused_with_a_clear_error():
    emu = InProcessEmulator(None, max_streams=2).start()
    channel = grpc.insecure_channel(emu.address)
    try:
        stub = pb_grpc.TaskHubSidecarServiceStub(channel)
        admitted = [stub.GetWorkItems(pb.GetWorkItemsRequest()) for _ in range(2)]
        wait_until(lambda: emu.backend.dispatch.open_streams() == 2, message="two streams at the server")
        with pytest.raises(grpc.RpcError) as refused:
            next(stub.GetWorkItems(pb.GetWorkItemsRequest()))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "2 worker streams" in refused.value.details()
        assert emu.backend.dispatch.open_streams() == 2  # the admitted ones are untouched
        assert stub.StartInstance(pb.CreateInstanceRequest(instanceId="after", name="wf")).instanceId == "after"
        for stream in admitted:
            stream.cancel()
        wait_until(lambda: emu.backend.dispatch.open_streams() == 0, message="cancelled streams closed")
    finally:
        channel.close()
        emu.stop()
