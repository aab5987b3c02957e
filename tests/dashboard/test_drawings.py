"""The instance page's drawings as data: spans paired by their IDs, durations in ms, messages in order."""

from __future__ import annotations

from durabletask.internal import orchestrator_service_pb2 as pb

from dts_emulator import events as ev
from dts_emulator.dashboard import drawings

T0 = 1_700_000_000.0
HOSTILE = '</text><script>alert(1)</script><img src=x onerror=alert(2)>'


def at(ms: float, event_id: int = -1, **kind) -> pb.HistoryEvent:
    return ev.event(event_id, at=T0 + ms / 1000, **kind)


def called(request_id: str, target: str, operation: str) -> pb.HistoryEvent:
    return pb.EntityOperationCalledEvent(requestId=request_id, operation=operation, targetInstanceId=ev.string(target))


def unlock(target: str) -> pb.EntityUnlockSentEvent:
    return pb.EntityUnlockSentEvent(criticalSectionId="cs", targetInstanceId=ev.string(target))


def history(account_a: str = "@account@a", account_b: str = "@account@b") -> list[pb.HistoryEvent]:
    return [
        at(0, executionStarted=pb.ExecutionStartedEvent(name="transfer_funds")),
        at(1, orchestratorStarted=pb.OrchestratorStartedEvent()),
        at(2, 0, entityLockRequested=pb.EntityLockRequestedEvent(
            criticalSectionId="cs", lockSet=[account_a, account_b], position=0, parentInstanceId=ev.string("i"))),
        at(3, orchestratorCompleted=pb.OrchestratorCompletedEvent()),
        at(12.5, entityLockGranted=pb.EntityLockGrantedEvent(criticalSectionId="cs")),
        at(13, 1, entityOperationCalled=called("r1", account_a, "withdraw")),
        at(20.25, entityOperationCompleted=pb.EntityOperationCompletedEvent(requestId="r1")),
        at(21, 2, taskScheduled=pb.TaskScheduledEvent(name=HOSTILE)),
        at(31, taskFailed=pb.TaskFailedEvent(taskScheduledId=2, failureDetails=ev.failure("boom"))),
        at(32, 3, entityUnlockSent=unlock(account_a)),
        at(32.5, 4, entityUnlockSent=unlock(account_b)),
        at(33, 5, timerCreated=pb.TimerCreatedEvent(fireAt=ev.timestamp(T0 + 0.05))),
        at(34, orchestratorCompleted=pb.OrchestratorCompletedEvent()),
        at(50, timerFired=pb.TimerFiredEvent(timerId=5, fireAt=ev.timestamp(T0 + 0.05))),
        at(51, 6, subOrchestrationInstanceCreated=pb.SubOrchestrationInstanceCreatedEvent(name="child",
                                                                                           instanceId="kid")),
        at(52, orchestratorCompleted=pb.OrchestratorCompletedEvent()),
        at(70, subOrchestrationInstanceCompleted=pb.SubOrchestrationInstanceCompletedEvent(taskScheduledId=6)),
        at(71, orchestratorCompleted=pb.OrchestratorCompletedEvent()),
        at(90, eventRaised=pb.EventRaisedEvent(name=HOSTILE)),
        at(91, executionCompleted=pb.ExecutionCompletedEvent(
            orchestrationStatus=pb.ORCHESTRATION_STATUS_COMPLETED)),
    ]


def spans_of(drawn: dict, kind: str) -> list[dict]:
    return [s for s in drawn["timeline"] if s["kind"] == kind]


def test_each_span_pairs_its_start_and_end_with_the_duration_in_ms():
    drawn = drawings.draw(history(), "i", None)
    (run,) = spans_of(drawn, "orchestration")
    assert (run["start"], run["end"], run["ms"], run["outcome"]) == (0, 91, 91, "done")
    (lock,) = spans_of(drawn, "lock")
    assert (lock["start"], lock["granted"], lock["end"]) == (2, 12.5, 32.5)
    assert (lock["waitMs"], lock["heldMs"]) == (10.5, 20) and lock["label"] == "account/a, account/b"
    (call,) = spans_of(drawn, "entity")
    assert (call["ms"], call["target"], call["outcome"]) == (7.25, "entity:@account@a", "done")
    (activity,) = spans_of(drawn, "activity")
    assert (activity["label"], activity["ms"], activity["outcome"]) == (HOSTILE, 10, "failed")
    (timer,) = spans_of(drawn, "timer")
    assert (timer["start"], timer["end"]) == (33, 50)
    (child,) = spans_of(drawn, "suborchestration")
    assert (child["ms"], child["target"]) == (19, "instance:kid")
    (wait,) = spans_of(drawn, "event")  # from the end of the last worker turn before it arrived
    assert (wait["start"], wait["end"], wait["ms"]) == (71, 90, 19)
    assert drawn["endMs"] == 91 and drawn["origin"] == ev.timestamp(T0).ToJsonString()


def test_a_span_without_its_end_stays_open_until_the_last_event():
    events = history()[:8]  # the activity was scheduled, and nothing came back yet
    drawn = drawings.draw(events, "i", None)
    (activity,) = spans_of(drawn, "activity")
    assert (activity["outcome"], activity["ms"], activity["end"]) == ("open", None, 21)
    (lock,) = spans_of(drawn, "lock")
    assert lock["outcome"] == "open" and "heldMs" not in lock


def test_the_sequence_names_each_partner_once_and_keeps_the_order_of_messages():
    drawn = drawings.draw(history(), "i", {"kind": "entity", "id": "@account@starter"})
    participants = drawn["sequence"]["participants"]
    assert [p["key"] for p in participants] == [
        "starter", "self", "entity:@account@a", "entity:@account@b", f"activity:{HOSTILE}", "instance:kid",
        "external"]
    assert participants[0] == {"key": "starter", "kind": "entity", "label": "account/starter",
                               "id": "@account@starter"}
    assert participants[5]["id"] == "kid" and participants[4]["label"] == HOSTILE
    messages = [(m["from"], m["to"], m["label"]) for m in drawn["sequence"]["messages"]]
    assert messages == [
        ("starter", "self", "start transfer_funds"),
        ("self", "entity:@account@a", "lock request"),
        ("self", "entity:@account@b", "lock request"),
        ("entity:@account@b", "self", "lock granted"),
        ("self", "entity:@account@a", "call withdraw"),
        ("entity:@account@a", "self", "returned"),
        ("self", f"activity:{HOSTILE}", HOSTILE),
        (f"activity:{HOSTILE}", "self", "failed"),
        ("self", "entity:@account@a", "release"),
        ("self", "entity:@account@b", "release"),
        ("self", "self", "timer until +50 ms"),
        ("self", "self", "timer 5 fired"),
        ("self", "instance:kid", "start child"),
        ("instance:kid", "self", "result"),
        ("external", "self", f"event '{HOSTILE}'"),
        ("self", "starter", "completed"),
    ]
    assert [m["at"] for m in drawn["sequence"]["messages"]] == sorted(m["at"] for m in drawn["sequence"]["messages"])


def test_a_parent_orchestration_starts_the_sequence():
    drawn = drawings.draw(history(), "i", {"kind": "orchestration", "id": "parent-1"})
    assert drawn["sequence"]["participants"][0] == {"key": "starter", "kind": "orchestration", "label": "parent-1",
                                                    "id": "parent-1"}
    client = drawings.draw(history(), "i", None)["sequence"]["participants"][0]
    assert client == {"key": "starter", "kind": "client", "label": "client", "id": None}


def test_no_history_draws_nothing():
    assert drawings.draw([], "i", None) == {"origin": None, "endMs": 0.0, "timeline": [],
                                            "sequence": drawings.draw([], "i", None)["sequence"]}
