"""``SkipGracefulOrchestrationTerminations``: end instances at once, without asking a worker.

A graceful terminate (``control.terminate``) is a message the worker applies in turn;
this one is for instances whose worker is gone or stuck. Each instance in the batch
that is PENDING, RUNNING or SUSPENDED, is not a sub-orchestration and has no running
sub-orchestration, ends as TERMINATED here, with the reason as its output; its queued
messages are dropped and its entity locks released (``Backend.finish_instance``). The
others are returned to the caller untouched: a parent would otherwise wait forever on
a child that vanished, and a child's parent is still owed its outcome.
"""

from __future__ import annotations

from durabletask.internal import orchestrator_service_pb2 as pb

from . import events as ev
from .backend import Backend

# One batch is one transaction: it must stay short, like any other change on the engine's loop.
MAX_BATCH = 500
TERMINABLE = frozenset({pb.ORCHESTRATION_STATUS_PENDING, pb.ORCHESTRATION_STATUS_RUNNING,
                        pb.ORCHESTRATION_STATUS_SUSPENDED})


def check_batch(instance_ids: list[str]) -> str | None:
    """Why a batch is refused, or None."""
    if not instance_ids:
        return "instanceBatch is empty: give the IDs of the instances to terminate"
    if len(instance_ids) > MAX_BATCH:
        return f"instanceBatch has {len(instance_ids)} IDs; at most {MAX_BATCH} are accepted per call"
    return None


def _has_running_children(backend: Backend, hub: str, instance_id: str) -> bool:
    return any(child.status not in ev.TERMINAL for child in backend.instances.child_rows(hub, instance_id))


def _terminable(backend: Backend, hub: str, instance_id: str):
    row = backend.instances.get(hub, instance_id)
    if row is None or row.status not in TERMINABLE or row.parent_instance_id:
        return None
    if _has_running_children(backend, hub, instance_id):
        return None
    return row


def skip_graceful_terminations(backend: Backend, hub: str, instance_ids: list[str], reason: str | None) -> list[str]:
    """Terminate what may be terminated at once; return the IDs that were not, in request order."""
    unterminated: list[str] = []
    seen: set[str] = set()
    with backend.tx():
        for instance_id in instance_ids:
            if instance_id in seen:
                continue
            seen.add(instance_id)
            row = _terminable(backend, hub, instance_id)
            if row is None:
                unterminated.append(instance_id)
                continue
            # A work item a worker holds now is dropped when it completes (the instance has ended).
            moment = backend.clock.now()
            terminated = pb.ExecutionTerminatedEvent(input=ev.string(reason))
            completed = pb.ExecutionCompletedEvent(orchestrationStatus=pb.ORCHESTRATION_STATUS_TERMINATED,
                                                   result=ev.string(reason))
            backend.instances.append_history(hub, instance_id, [
                ev.event(executionTerminated=terminated, at=moment).SerializeToString(),
                ev.event(executionCompleted=completed, at=moment).SerializeToString(),
            ])
            row.status, row.output, row.failure = pb.ORCHESTRATION_STATUS_TERMINATED, reason, None
            backend.instances.finish(row)
    return unterminated
