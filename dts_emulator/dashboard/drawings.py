"""What the instance page draws: a timeline of spans and a sequence of messages, from the history.

Both are plain data (times in milliseconds from the instance's first event, names as text);
the page only lays them out as SVG with DOM calls. Spans pair each start with its end by the
IDs the history carries: a task's ``eventId`` and ``taskScheduledId``, an entity call's
``requestId``, a critical section's ``criticalSectionId``, a timer's ``timerId``.
A span whose end has not happened yet runs to the last event (``open``).
"""

from __future__ import annotations

from typing import Any

from durabletask.internal import orchestrator_service_pb2 as pb

from .. import events as ev

SELF = "self"  # the orchestration's own lane in the sequence diagram


def _ms(e: pb.HistoryEvent, origin: float) -> float:
    return round((ev.seconds(e.timestamp) - origin) * 1000, 3) if e.HasField("timestamp") else 0.0


class _Spans:
    def __init__(self):
        self.spans: list[dict] = []
        self.open: dict[tuple[str, Any], dict] = {}

    def start(self, key: tuple[str, Any], kind: str, label: str, at: float, target: str | None = None) -> dict:
        span = {"kind": kind, "label": label, "start": at, "end": None, "ms": None, "outcome": "open",
                "target": target}
        self.spans.append(span)
        self.open[key] = span
        return span

    def end(self, key: tuple[str, Any], at: float, outcome: str) -> dict | None:
        span = self.open.pop(key, None)
        if span is not None:
            span.update(end=at, ms=round(at - span["start"], 3), outcome=outcome)
        return span


def _label(entity_id: str) -> str:
    parts = entity_id.split("@")
    return f"{parts[1]}/{parts[2]}" if len(parts) == 3 else entity_id


def draw(events: list[pb.HistoryEvent], instance_id: str, starter: dict | None) -> dict:
    """{"timeline": spans, "sequence": {"participants", "messages"}, "endMs"} for one history.

    ``starter`` is who started the instance ({"kind": "client"|"orchestration"|"entity", "id"}).
    """
    stamped = [e for e in events if e.HasField("timestamp")]
    origin = min(ev.seconds(e.timestamp) for e in stamped) if stamped else 0.0
    spans = _Spans()
    seq = _Sequence(starter)
    calls: dict[str, str] = {}
    last_turn_end: float | None = None
    finished: float | None = None
    for e in events:
        at, kind = _ms(e, origin), ev.kind_of(e)
        inner = getattr(e, kind)
        match kind:
            case "executionStarted":
                spans.start(("run", None), "orchestration", inner.name, at)
                seq.send("starter", SELF, f"start {inner.name}", at, "start")
            case "executionCompleted":
                status = pb.OrchestrationStatus.Name(inner.orchestrationStatus).removeprefix("ORCHESTRATION_STATUS_")
                spans.end(("run", None), at, "failed" if status == "FAILED" else "done")
                seq.send(SELF, "starter", status.lower(), at, "result")
                finished = at
            case "executionTerminated":
                seq.send("client", SELF, "terminate", at, "start")
            case "orchestratorCompleted":
                last_turn_end = at
            case "taskScheduled":
                spans.start(("task", e.eventId), "activity", inner.name, at, f"activity:{inner.name}")
                seq.send(SELF, f"activity:{inner.name}", inner.name, at, "call")
            case "taskCompleted" | "taskFailed":
                span = spans.end(("task", inner.taskScheduledId), at, "done" if kind == "taskCompleted" else "failed")
                if span:
                    seq.send(span["target"], SELF, "failed" if kind == "taskFailed" else "result", at, "result")
            case "timerCreated":
                spans.start(("timer", e.eventId), "timer", f"timer {e.eventId}", at, SELF)
                fires = round((ev.seconds(inner.fireAt) - origin) * 1000, 1)
                seq.send(SELF, SELF, f"timer until +{fires:g} ms", at, "timer")
            case "timerFired":
                spans.end(("timer", inner.timerId), at, "done")
                seq.send(SELF, SELF, f"timer {inner.timerId} fired", at, "timer")
            case "subOrchestrationInstanceCreated":
                target = f"instance:{inner.instanceId}"
                spans.start(("task", e.eventId), "suborchestration", f"{inner.name} ({inner.instanceId})", at, target)
                seq.send(SELF, target, f"start {inner.name}", at, "call", instance=inner.instanceId)
            case "subOrchestrationInstanceCompleted" | "subOrchestrationInstanceFailed":
                failed = kind.endswith("Failed")
                span = spans.end(("task", inner.taskScheduledId), at, "failed" if failed else "done")
                if span:
                    seq.send(span["target"], SELF, "failed" if failed else "result", at, "result")
            case "eventRaised":
                since = last_turn_end if last_turn_end is not None else 0.0
                span = spans.start(("event", e.eventId, at), "event", f"wait for '{inner.name}'", since)
                spans.end(("event", e.eventId, at), at, "done")
                span["note"] = "from the end of the worker turn before it arrived"
                seq.send("external", SELF, f"event '{inner.name}'", at, "event")
            case "eventSent":
                seq.send(SELF, f"instance:{inner.instanceId}", f"event '{inner.name}'", at, "event",
                         instance=inner.instanceId)
            case "entityOperationSignaled":
                target = inner.targetInstanceId.value
                spans.start(("signal", inner.requestId), "entity", f"signal {inner.operation} to {_label(target)}", at,
                            f"entity:{target}")
                spans.end(("signal", inner.requestId), at, "done")
                seq.send(SELF, f"entity:{target}", f"signal {inner.operation}", at, "signal", entity=target)
            case "entityOperationCalled":
                target = inner.targetInstanceId.value
                calls[inner.requestId] = f"entity:{target}"
                spans.start(("call", inner.requestId), "entity", f"{inner.operation} on {_label(target)}", at,
                            f"entity:{target}")
                seq.send(SELF, f"entity:{target}", f"call {inner.operation}", at, "call", entity=target)
            case "entityOperationCompleted" | "entityOperationFailed":
                failed = kind.endswith("Failed")
                span = spans.end(("call", inner.requestId), at, "failed" if failed else "done")
                if span:
                    seq.send(calls[inner.requestId], SELF, "failed" if failed else "returned", at, "result")
            case "entityLockRequested":
                held = ", ".join(_label(i) for i in inner.lockSet)
                span = spans.start(("lock", inner.criticalSectionId), "lock", held, at)
                span["granted"] = None
                for target in inner.lockSet:
                    seq.send(SELF, f"entity:{target}", "lock request", at, "lock", entity=target)
            case "entityLockGranted":
                span = spans.open.get(("lock", inner.criticalSectionId))
                if span is not None:
                    span["granted"] = at
                    span["waitMs"] = round(at - span["start"], 3)
                    last = [m for m in seq.messages if m["kind"] == "lock" and m["label"] == "lock request"]
                    seq.send(last[-1]["to"] if last else "entities", SELF, "lock granted", at, "lock")
            case "entityUnlockSent":
                target = inner.targetInstanceId.value
                seq.send(SELF, f"entity:{target}", "release", at, "lock", entity=target)
                span = spans.open.get(("lock", inner.criticalSectionId))
                if span is not None:
                    span.update(end=at, ms=round(at - span["start"], 3), outcome="done")
                    if span.get("granted") is not None:
                        span["heldMs"] = round(at - span["granted"], 3)
    end = finished if finished is not None else (max((_ms(e, origin) for e in stamped), default=0.0))
    for span in spans.spans:
        if span["end"] is None:
            span["end"] = end
    return {"origin": ev.timestamp(origin).ToJsonString() if stamped else None, "endMs": end,
            "timeline": spans.spans, "sequence": seq.result()}


class _Sequence:
    """Participants in order of first appearance (the starter first, then the orchestration)."""

    def __init__(self, starter: dict | None):
        self.participants: dict[str, dict] = {}
        self.messages: list[dict] = []
        starter = starter or {"kind": "client", "id": None}
        label = {"client": "client", "orchestration": "parent", "entity": "entity"}.get(starter["kind"], "client")
        self._add("starter", starter["kind"], label if not starter["id"] else
                  (_label(starter["id"]) if starter["kind"] == "entity" else starter["id"]), starter["id"])
        self._add(SELF, "self", "this orchestration", None)

    def _add(self, key: str, kind: str, label: str, link: str | None) -> None:
        if key not in self.participants:
            self.participants[key] = {"key": key, "kind": kind, "label": label, "id": link}

    def _ensure(self, key: str, entity: str | None, instance: str | None) -> None:
        if key in self.participants:
            return
        if entity is not None:
            self._add(key, "entity", _label(entity), entity)
        elif instance is not None:
            self._add(key, "orchestration", instance, instance)
        elif key.startswith("activity:"):
            self._add(key, "activity", key.removeprefix("activity:"), None)
        else:
            self._add(key, key, key, None)

    def send(self, source: str, target: str, label: str, at: float, kind: str, entity: str | None = None,
             instance: str | None = None) -> None:
        for key in (source, target):
            if key.startswith("entity:"):
                self._ensure(key, key.removeprefix("entity:"), None)
            elif key.startswith("instance:"):
                self._ensure(key, None, key.removeprefix("instance:"))
            else:
                self._ensure(key, entity, instance)
        self.messages.append({"from": source, "to": target, "label": label, "at": at, "kind": kind})

    def result(self) -> dict:
        return {"participants": list(self.participants.values()), "messages": self.messages}
