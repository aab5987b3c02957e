"""What each unfinished orchestration waits for, in words: for a failed test's report and a timed-out wait.

A test that waits for an instance that never completes otherwise ends with the SDK's bare
``TimeoutError``, while the engine knows the instance waits on a timer a day ahead with time
skipping off, on an entity another instance holds locked, or on work no connected worker serves.

The engine is read through ``EngineView`` only: a handful of named reads, so that this module
does not depend on how the engine is split into modules. Run it on the engine's loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from durabletask.internal import orchestrator_service_pb2 as pb

from . import events as ev
from .store import ACTIVITY, ENTITY, ORCHESTRATION, InstanceRow
from .validation import entity_name

UNFINISHED = (pb.ORCHESTRATION_STATUS_PENDING, pb.ORCHESTRATION_STATUS_RUNNING, pb.ORCHESTRATION_STATUS_SUSPENDED)
MAX_REPORTED = 20  # instances per report; a test that leaves more gets the count of the rest


class EngineView:
    """The reads a diagnosis needs, each one call into the engine (``Backend``)."""

    def __init__(self, backend, workers):
        """``workers``: the server's registry of connected workers (``workers.Registry``)."""
        self._backend, self._workers = backend, workers

    def hubs(self) -> list[str]:
        return list(self._backend.hubs)

    def unfinished(self, hub: str, limit: int) -> list[InstanceRow]:
        rows = self._backend.store.query_instances(hub, statuses=UNFINISHED, limit=limit + 1)
        return [row for row in rows if not row.instance_id.startswith("@")]  # entities are not instances here

    def events(self, hub: str, instance_id: str) -> list[pb.HistoryEvent]:
        """Its history, then the new events delivered to it and not yet run by a worker (a timer's
        TimerFired waits in its queue, not yet visible, until the timer is due)."""
        history = [ev.parse(blob) for blob in self._backend.history(hub, instance_id)]
        queued = self._backend.store.messages_for(hub, ORCHESTRATION, instance_id, visible_by=self.now())
        queued = [ev.parse(m.payload) for m in queued]
        return history + queued

    def lock_holder(self, hub: str, entity_id: str) -> str | None:
        row = self._backend.entity(hub, entity_id)
        return row.lock_owner if row is not None else None

    def workers(self, hub: str) -> list:
        """For each worker connected to the hub: ``accepts(kind, (name, version))``, from its filters."""
        return [w.filters.accepts for w in self._workers.connected.values() if w.hub == hub]

    def now(self) -> float:
        return self._backend.clock.now()

    def time_skipping(self) -> bool:
        return self._backend.clock.skipping


@dataclass
class Outstanding:
    """What an orchestration's history shows it started and has not seen finish."""

    timers: dict[int, float] = field(default_factory=dict)  # timer id -> due (seconds since the epoch)
    activities: dict[int, str] = field(default_factory=dict)  # task id -> activity name
    children: dict[int, str] = field(default_factory=dict)  # task id -> sub-orchestration instance id
    calls: dict[str, tuple[str, str]] = field(default_factory=dict)  # request id -> (entity, operation)
    locks: dict[str, list[str]] = field(default_factory=dict)  # critical section -> the entities it locks
    events_received: list[str] = field(default_factory=list)


def outstanding(events: list[pb.HistoryEvent]) -> Outstanding:
    found = Outstanding()
    for e in events:
        kind = e.WhichOneof("eventType")
        if kind == "timerCreated":
            found.timers[e.eventId] = e.timerCreated.fireAt.ToNanoseconds() / 1e9
        elif kind == "timerFired":
            found.timers.pop(e.timerFired.timerId, None)
        elif kind == "taskScheduled":
            found.activities[e.eventId] = e.taskScheduled.name
        elif kind in ("taskCompleted", "taskFailed"):
            found.activities.pop(getattr(e, kind).taskScheduledId, None)
        elif kind == "subOrchestrationInstanceCreated":
            found.children[e.eventId] = e.subOrchestrationInstanceCreated.instanceId
        elif kind in ("subOrchestrationInstanceCompleted", "subOrchestrationInstanceFailed"):
            found.children.pop(getattr(e, kind).taskScheduledId, None)
        elif kind == "entityOperationCalled":
            call = e.entityOperationCalled
            found.calls[call.requestId] = (call.targetInstanceId.value, call.operation)
        elif kind in ("entityOperationCompleted", "entityOperationFailed"):
            found.calls.pop(getattr(e, kind).requestId, None)
        elif kind == "entityLockRequested":
            found.locks[e.entityLockRequested.criticalSectionId] = list(e.entityLockRequested.lockSet)
        elif kind == "entityLockGranted":
            found.locks.pop(e.entityLockGranted.criticalSectionId, None)
        elif kind == "eventRaised":
            found.events_received.append(e.eventRaised.name)
    return found


def when(moment: float) -> str:
    return datetime.fromtimestamp(moment, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def span(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes = int(seconds // 60)
    days, hours, minutes = minutes // 1440, minutes // 60 % 24, minutes % 60
    return " ".join(f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "min")) if n) or "0min"


def served(view: EngineView, hub: str, kind: str, name: str) -> str | None:
    """Why no connected worker would take this work, or None when one would."""
    workers = view.workers(hub)
    what = {ORCHESTRATION: "orchestration", ACTIVITY: "activity", ENTITY: "entity"}[kind]
    if not workers:
        return f"no worker is connected to task hub '{hub}' to run {what} '{name}'"
    if not any(accepts(kind, (name, None)) for accepts in workers):
        return f"no connected worker has registered {what} '{name}' ({len(workers)} connected to '{hub}')"
    return None


def waits_of(view: EngineView, row: InstanceRow) -> list[str]:
    """One line for each thing the instance waits on."""
    hub = row.hub
    found = outstanding(view.events(hub, row.instance_id))
    lines = []
    if row.status == pb.ORCHESTRATION_STATUS_SUSPENDED:
        lines.append("it is suspended: resume it (client.resume_orchestration) to go on")
    if row.status == pb.ORCHESTRATION_STATUS_PENDING:
        lines.append(served(view, hub, ORCHESTRATION, row.name) or "its start waits for a worker to take it")
    now, skipping = view.now(), view.time_skipping()
    for due in sorted(found.timers.values()):
        advice = ("time skipping is on, so the clock jumps there once nothing else runs" if skipping else
                  "time skipping is off: mark the test @pytest.mark.dts_emulator(time_skipping=True), or move "
                  "the clock with dts_emulator.advance(...)")
        lines.append(f"a timer due {when(due)}, {span(due - now)} ahead on the emulator's clock; {advice}")
    for name in found.activities.values():
        lines.append(f"activity '{name}'" + (f": {reason}" if (reason := served(view, hub, ACTIVITY, name)) else ""))
    for child in found.children.values():
        lines.append(f"sub-orchestration '{child}' (see below)")
    for entity, operation in found.calls.values():
        lines.append(f"entity '{entity}' to answer '{operation}'" + entity_trouble(view, hub, entity, row.instance_id))
    for entities in found.locks.values():
        for entity in entities:
            holder = view.lock_holder(hub, entity)
            if holder != row.instance_id:
                lines.append(f"the lock on entity '{entity}'" + (f", held by instance '{holder}'" if holder else "")
                             + entity_trouble(view, hub, entity, row.instance_id, holder_said=True))
    if row.status == pb.ORCHESTRATION_STATUS_RUNNING and not lines:
        received = ", ".join(f"'{n}'" for n in found.events_received) or "none"
        lines.append("nothing the scheduler can see: an external event, most likely (the SDK does not tell the "
                     f"scheduler which name it waits for; events it received: {received})")
    return lines


def entity_trouble(view: EngineView, hub: str, entity: str, waiter: str, holder_said: bool = False) -> str:
    reasons = []
    holder = view.lock_holder(hub, entity)
    if holder and holder != waiter and not holder_said:
        reasons.append(f"it is locked by instance '{holder}'")
    if reason := served(view, hub, ENTITY, entity_name(entity)):
        reasons.append(reason)
    return f" ({'; '.join(reasons)})" if reasons else ""


def describe(backend, workers) -> str:
    """Every unfinished orchestration of every task hub, and what it waits for; '' when there is none."""
    view = EngineView(backend, workers)
    blocks = []
    for hub in view.hubs():
        rows = view.unfinished(hub, MAX_REPORTED)
        for row in rows[:MAX_REPORTED]:
            status = pb.OrchestrationStatus.Name(row.status).removeprefix("ORCHESTRATION_STATUS_")
            waits = "\n".join(f"  - {line}" for line in waits_of(view, row))
            blocks.append(f"instance '{row.instance_id}' ({row.name}, {status}, task hub '{hub}') waits for:\n{waits}")
        if len(rows) > MAX_REPORTED:
            blocks.append(f"(and more unfinished instances in task hub '{hub}')")
    return "\n".join(blocks)
