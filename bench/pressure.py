"""Two workloads that put a backend under pressure: many waiting clients, and a frozen worker.

waiting_clients  W clients blocked in WaitForInstanceCompletion on instances that stay
                 unfinished; a worker that connects after them; M new counter_workflow
                 orchestrations one after another (each StartInstance to its completion
                 timed), and the backend's RSS while the clients wait.
frozen_worker    two workers on one backend; one stops itself (SIGSTOP) holding a work item;
                 the time until the other has done all the work, and whether every answer
                 is exact after the frozen one is thawed and sends its late completions.

Each is capped, so a backend that never copes still gives a finite (bad) figure.
"""

from __future__ import annotations

import json
import logging
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from durabletask import client as dt_client
from durabletask import entities
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc
from google.protobuf import wrappers_pb2

from bench.common import WrongResult, process_state, rss_mb
from bench.waiting_clients import UNFINISHED, Probe, WaitingClients
from bench.worker_process import WorkerProcess

QUIET = logging.getLogger("bench-client")
QUIET.setLevel(logging.WARNING)
ORCHESTRATION_CAP = 30.0  # s; a new orchestration not completed by then counts as a timeout, at this value
FROZEN_CAP = 90.0  # s; a frozen worker's work not done elsewhere by then: "not recovered within cap"
AFTER_THAW = 30.0  # s; how long the work may take to finish once the frozen worker is thawed


RUNNING_STATES = (dt_client.OrchestrationStatus.PENDING, dt_client.OrchestrationStatus.RUNNING)


def expected_output(key: str) -> str:
    return json.dumps(f"Counter '{key}' final value: 12")


# -- waiting clients -----------------------------------------------------------------------------

@dataclass
class WaitingResult:
    waiting: int
    probe: Probe
    latencies_ms: list[float] = field(default_factory=list)  # a timeout counts as the cap
    timeouts: int = 0
    errors: Counter = field(default_factory=Counter)  # failed new orchestrations, by status code
    waits_ended_before: Counter = field(default_factory=Counter)  # waits that ended before the timing began
    waits_ended: Counter = field(default_factory=Counter)  # waits that ended while measuring, by outcome
    rss_mb: float = 0.0  # the backend's largest RSS seen while the clients waited


def start_unfinished(address: str, count: int, timeout: float = 300) -> list[str]:
    """``count`` instances waiting for an event that never comes, run to RUNNING by a worker that then leaves."""
    run = uuid.uuid4().hex[:8]
    ids = [f"wait-{run}-{i}" for i in range(count)]
    starter = WorkerProcess(address).ready()
    client = dt_client.TaskHubGrpcClient(host_address=address, logger=QUIET)
    try:
        for instance_id in ids:
            client.schedule_new_orchestration("awaits_release", instance_id=instance_id)
        for instance_id in ids:
            state = client.wait_for_orchestration_start(instance_id, timeout=timeout)
            if state is None or state.runtime_status != dt_client.OrchestrationStatus.RUNNING:
                raise WrongResult(f"{instance_id} is {state and state.runtime_status}, not RUNNING")
    finally:
        client.close()
        starter.stop()
    return ids


def time_new_orchestrations(address: str, count: int, cap: float, sample: Callable[[], None],
                            result: WaitingResult) -> None:
    """``count`` counter_workflow orchestrations one after another, after one warm-up.

    The warm-up is timed only if it times out. The first timeout ends the sequence: the
    backend is starved, and each further orchestration would only cost another ``cap``.
    """
    run = uuid.uuid4().hex[:8]
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.TaskHubSidecarServiceStub(channel)
        for i in range(count + 1):
            key = f"new-{run}-{i}"
            start = time.monotonic()
            try:
                stub.StartInstance(pb.CreateInstanceRequest(
                    instanceId=key, name="counter_workflow", input=wrappers_pb2.StringValue(value=json.dumps(key))),
                    timeout=cap)
                answer = stub.WaitForInstanceCompletion(
                    pb.GetInstanceRequest(instanceId=key, getInputsAndOutputs=True),
                    timeout=max(0.001, cap - (time.monotonic() - start)))
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    result.errors[exc.code().name] += 1
                    continue
                answer = None
            finally:
                sample()
            elapsed = time.monotonic() - start
            state = answer and answer.orchestrationState
            if state is None or state.orchestrationStatus in UNFINISHED:  # a wait that gave up is a timeout too
                result.timeouts += 1
                result.latencies_ms.append(cap * 1000)
                return
            if state.orchestrationStatus != pb.ORCHESTRATION_STATUS_COMPLETED or \
                    state.output.value != expected_output(key):
                raise WrongResult(f"new orchestration {key}: status {state.orchestrationStatus}, "
                                  f"output {state.output.value!r}")
            if i:
                result.latencies_ms.append(elapsed * 1000)


def waiting_clients(address: str, backend_pid: int, waiting: int, orchestrations: int,
                    cap: float = ORCHESTRATION_CAP, channels: int = 4) -> WaitingResult:
    ids = start_unfinished(address, waiting)
    rss = []
    waiters = WaitingClients(address, channels=channels, deadline=cap * 4 + 120)  # outlives the measurement
    try:
        result = WaitingResult(waiting, waiters.start(ids))
        # Refused or ended already (e.g. RESOURCE_EXHAUSTED past a backend's limit): counted, not hidden.
        result.waits_ended_before = Counter(waiters.outcomes)
        rss.append(rss_mb(backend_pid))
        worker = WorkerProcess(address).ready()  # connects after the waiters, as a restarted worker would
        try:
            time_new_orchestrations(address, orchestrations, cap, lambda: rss.append(rss_mb(backend_pid)), result)
        finally:
            worker.stop()
        result.waits_ended = Counter(waiters.outcomes) - result.waits_ended_before
    finally:
        waiters.close()
    result.rss_mb = max(rss)
    return result


# -- frozen worker ------------------------------------------------------------------------------

@dataclass
class FrozenResult:
    held: str  # what the frozen worker said it held when it stopped
    recovered_s: float | None  # from the freeze until all work was done; None: not within the cap
    late_completion: str  # the backend's answer to the thawed worker's completion of what it held
    unfinished: dict[str, str] = field(default_factory=dict)  # still unfinished after the thaw
    wrong: dict[str, str] = field(default_factory=dict)  # wrong answers after the thaw (e.g. a signal applied twice)


class Load:
    """Orchestrations over counters of their own and signals over a few shared counters, with their answers."""

    def __init__(self, client, orchestrations: int, signals: int, entity_count: int):
        run = uuid.uuid4().hex[:8]
        self.client = client
        self.keys = [f"frozen-{run}-{i}" for i in range(orchestrations)]
        self.shared = [entities.EntityInstanceId("counter", f"shared-{run}-{k}") for k in range(entity_count)]
        self.expected = {str(e): 0 for e in self.shared}
        self.ids = [client.schedule_new_orchestration("counter_workflow", input=key) for key in self.keys]
        for i in range(signals):
            target = self.shared[i % entity_count]
            client.signal_entity(target, "add", 1)
            self.expected[str(target)] += 1
        self.expected.update({str(entities.EntityInstanceId("counter", key)): 12 for key in self.keys})

    def counter(self, eid: str) -> int | None:
        meta = self.client.get_entity(entities.EntityInstanceId.parse(eid))
        return meta.get_typed_state(int) if meta else None

    def check(self, only: set[str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
        """(unfinished, wrong) answers, by instance or entity ID, among ``only`` these when given.

        Unfinished: an orchestration not yet ended, a counter below its count. Wrong: an
        orchestration that ended with another answer, a counter above its count (an operation
        applied twice).
        """
        unfinished, wrong = {}, {}
        for instance_id, key in zip(self.ids, self.keys, strict=True):
            if only is None or instance_id in only:
                state = self.client.get_orchestration_state(instance_id)
                if state is None or state.runtime_status in RUNNING_STATES:
                    unfinished[instance_id] = f"{state and state.runtime_status.name}"
                elif state.serialized_output != expected_output(key):
                    wrong[instance_id] = f"{state.runtime_status.name} {state.serialized_output!r}"
        for eid, count in self.expected.items():
            if only is None or eid in only:
                value = self.counter(eid)
                if value != count:
                    (wrong if value is not None and value > count else unfinished)[eid] = \
                        f"holds {value}, expected {count}"
        return unfinished, wrong

    def wait_done(self, timeout: float) -> bool:
        """Poll what is unfinished until nothing is (the scheduler offers no wait for an entity's state)."""
        deadline = time.monotonic() + timeout
        pending = {*self.ids, *self.expected}
        while pending := set(self.check(pending)[0]):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


def frozen_worker(address: str, orchestrations: int, signals: int, entity_count: int,
                  cap: float = FROZEN_CAP) -> FrozenResult:
    healthy = WorkerProcess(address)
    frozen = WorkerProcess(address, "--freeze-on", "entity")
    client = dt_client.TaskHubGrpcClient(host_address=address, logger=QUIET)
    try:
        healthy.ready()
        frozen.ready()
        load = Load(client, orchestrations, signals, entity_count)
        held = frozen.wait_for(r"freezing while holding .*", timeout=60)
        if held is None:
            raise RuntimeError("the worker to freeze received no entity work item; the workload proves nothing")
        start = time.monotonic()
        while process_state(frozen.pid) != "T":  # it stops itself right after saying so
            if time.monotonic() - start > 10:
                raise RuntimeError("the worker said it would freeze but is not stopped")
            time.sleep(0.01)
        recovered = load.wait_done(cap - (time.monotonic() - start))
        recovered_s = time.monotonic() - start if recovered else None
        frozen.proc.send_signal(signal.SIGCONT)
        late = frozen.wait_for(r"late completion of .*: (.*)", timeout=30)
        frozen.stop(timeout=30)  # a graceful stop: whatever else it still completes is sent before it exits
        load.wait_done(AFTER_THAW)
        return FrozenResult(held.group(0), recovered_s, late.group(1) if late else "none sent within 30 s",
                            *load.check())
    finally:
        client.close()
        frozen.stop()
        healthy.stop()
