"""The gRPC face of the emulator: ``TaskHubSidecarService``, protobuf in and out.

Each method picks the task hub from the ``taskhub`` header, checks its input
against DTS's limits, calls into the engine, and turns known failures into gRPC
status codes with messages that name the problem. No SQL here.
"""

from __future__ import annotations

import functools
import logging

import grpc
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc
from google.protobuf import empty_pb2, wrappers_pb2

from . import activities, control, entities, orchestrations
from . import events as ev
from .backend import Backend, StaleWorkItem
from .control import InvalidState, NotFound
from .paging import instance_token, parse_instance_token, split_page
from .store import InstanceRow
from .validation import check_entity_id, check_instance_id
from .workitems import Feeder, Filters, limits_from_request

log = logging.getLogger("emulator.service")

HEALTH_PING_SECONDS = 20.0
DEFAULT_PAGE_SIZE = 100
HISTORY_CHUNK = 500


class BadRequest(Exception):
    pass


_CODES = [
    (BadRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (InvalidState, grpc.StatusCode.FAILED_PRECONDITION),
    (StaleWorkItem, grpc.StatusCode.FAILED_PRECONDITION),
    (entities.EntityStateTooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (TimeoutError, grpc.StatusCode.DEADLINE_EXCEEDED),
]


def _rpc(method):
    """Map the engine's exceptions to gRPC status codes; never crash the server."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except Exception as exc:
            if context.code() is not None:
                raise  # already aborted with a chosen status
            for kind, code in _CODES:
                if isinstance(exc, kind):
                    log.debug("%s: %s: %s", method.__name__, code.name, exc)
                    context.abort(code, str(exc))
            log.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{method.__name__} failed: {exc}")

    return wrapper


def _require(problem: str | None) -> None:
    if problem is not None:
        raise BadRequest(problem)


def instance_state(row: InstanceRow, include_payloads: bool = True) -> pb.OrchestrationState:
    failure = None
    if row.failure:
        failure = pb.TaskFailureDetails.FromString(row.failure)
    return pb.OrchestrationState(
        instanceId=row.instance_id,
        name=row.name,
        version=ev.string(row.version),
        orchestrationStatus=row.status,
        scheduledStartTimestamp=ev.timestamp(row.scheduled_start) if row.scheduled_start else None,
        createdTimestamp=ev.timestamp(row.created_at),
        lastUpdatedTimestamp=ev.timestamp(row.updated_at),
        completedTimestamp=ev.timestamp(row.completed_at) if row.completed_at else None,
        input=ev.string(row.input) if include_payloads else None,
        output=ev.string(row.output) if include_payloads else None,
        customStatus=ev.string(row.custom_status),
        failureDetails=failure,
        executionId=ev.string(row.execution_id),
        parentInstanceId=ev.string(row.parent_instance_id),
        tags=row.tags,
    )


class TaskHubService(pb_grpc.TaskHubSidecarServiceServicer):
    def __init__(self, backend: Backend):
        self.backend = backend

    def _hub(self, context: grpc.ServicerContext) -> str:
        hub = next((value for key, value in context.invocation_metadata() if key == "taskhub"), None) or "default"
        if hub not in self.backend.hubs:
            known = ", ".join(self.backend.hubs)
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"task hub '{hub}' does not exist; this emulator serves: {known} "
                          "(add hubs with --task-hubs or DTS_TASK_HUB_NAMES)")
        return hub

    def Hello(self, request, context):
        self._hub(context)
        return empty_pb2.Empty()

    # -- orchestration instances ---------------------------------------------------

    @_rpc
    def StartInstance(self, request: pb.CreateInstanceRequest, context):
        hub = self._hub(context)
        instance_id = request.instanceId or ev.new_id()
        _require(check_instance_id(instance_id))
        if not request.name:
            raise BadRequest("orchestration name must not be empty")
        with self.backend.tx():
            existing = self.backend.store.peek_instance(hub, instance_id)
            if existing is not None:
                replaceable = set(request.orchestrationIdReusePolicy.replaceableStatus)
                if not request.HasField("orchestrationIdReusePolicy"):
                    replaceable = set(ev.TERMINAL)
                if existing.status not in replaceable:
                    status = pb.OrchestrationStatus.Name(existing.status)
                    context.abort(grpc.StatusCode.ALREADY_EXISTS,
                                  f"orchestration instance '{instance_id}' already exists with status {status}")
            self.backend.create_instance(
                hub, instance_id, request.name,
                version=ev.optional_string(request, "version"),
                input=ev.optional_string(request, "input"),
                tags=dict(request.tags),
                scheduled_start=ev.optional_seconds(request, "scheduledStartTimestamp"),
                parent_trace=request.parentTraceContext if request.HasField("parentTraceContext") else None,
            )
        return pb.CreateInstanceResponse(instanceId=instance_id)

    @_rpc
    def GetInstance(self, request: pb.GetInstanceRequest, context):
        row = self.backend.store.peek_instance(self._hub(context), request.instanceId)
        if row is None:
            return pb.GetInstanceResponse(exists=False)
        return pb.GetInstanceResponse(exists=True, orchestrationState=instance_state(row, request.getInputsAndOutputs))

    def _wait(self, request: pb.GetInstanceRequest, context, predicate) -> pb.GetInstanceResponse:
        hub = self._hub(context)
        remaining = context.time_remaining()
        row = self.backend.wait_for(hub, request.instanceId, predicate, remaining, context.is_active)
        if row is None:
            return pb.GetInstanceResponse(exists=False)
        return pb.GetInstanceResponse(exists=True, orchestrationState=instance_state(row, request.getInputsAndOutputs))

    @_rpc
    def WaitForInstanceStart(self, request, context):
        return self._wait(request, context, lambda row: row.status != pb.ORCHESTRATION_STATUS_PENDING)

    @_rpc
    def WaitForInstanceCompletion(self, request, context):
        return self._wait(request, context, lambda row: row.status in ev.TERMINAL)

    @_rpc
    def RaiseEvent(self, request: pb.RaiseEventRequest, context):
        if not request.name:
            raise BadRequest("event name must not be empty")
        control.raise_event(self.backend, self._hub(context), request.instanceId, request.name,
                            ev.optional_string(request, "input"))
        return pb.RaiseEventResponse()

    @_rpc
    def TerminateInstance(self, request: pb.TerminateRequest, context):
        hub = self._hub(context)
        if self.backend.store.peek_instance(hub, request.instanceId) is None:
            raise NotFound(f"no orchestration instance '{request.instanceId}' in task hub '{hub}'")
        control.terminate(self.backend, hub, request.instanceId, ev.optional_string(request, "output"),
                          request.recursive)
        return pb.TerminateResponse()

    @_rpc
    def SuspendInstance(self, request: pb.SuspendRequest, context):
        control.suspend(self.backend, self._hub(context), request.instanceId, ev.optional_string(request, "reason"))
        return pb.SuspendResponse()

    @_rpc
    def ResumeInstance(self, request: pb.ResumeRequest, context):
        control.resume(self.backend, self._hub(context), request.instanceId, ev.optional_string(request, "reason"))
        return pb.ResumeResponse()

    @_rpc
    def RestartInstance(self, request: pb.RestartInstanceRequest, context):
        new_id = control.restart(self.backend, self._hub(context), request.instanceId,
                                 request.restartWithNewInstanceId)
        return pb.RestartInstanceResponse(instanceId=new_id)

    @_rpc
    def RewindInstance(self, request: pb.RewindInstanceRequest, context):
        control.rewind(self.backend, self._hub(context), request.instanceId, ev.optional_string(request, "reason"))
        return pb.RewindInstanceResponse()

    @_rpc
    def SkipGracefulOrchestrationTerminations(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED,
                      "SkipGracefulOrchestrationTerminations is not supported by this emulator")

    @_rpc
    def PurgeInstances(self, request: pb.PurgeInstancesRequest, context):
        hub, store = self._hub(context), self.backend.store
        which = request.WhichOneof("request")
        if which == "instanceId":
            ids = [request.instanceId]
        elif which == "instanceBatch":
            ids = list(request.instanceBatch.instanceIds)
        elif which == "purgeInstanceFilter":
            f = request.purgeInstanceFilter
            statuses = list(f.runtimeStatus) or sorted(ev.TERMINAL)
            ids = [r.instance_id for r in store.query_instances(
                hub, statuses=statuses, created_from=ev.optional_seconds(f, "createdTimeFrom"),
                created_to=ev.optional_seconds(f, "createdTimeTo"))]
        else:
            raise BadRequest("PurgeInstances needs an instance ID, an instance batch or a filter")
        deleted = control.purge(self.backend, hub, ids, request.recursive)
        return pb.PurgeInstancesResponse(deletedInstanceCount=deleted, isComplete=wrappers_pb2.BoolValue(value=True))

    @_rpc
    def QueryInstances(self, request: pb.QueryInstancesRequest, context):
        hub, q = self._hub(context), request.query
        limit = q.maxInstanceCount if q.maxInstanceCount > 0 else DEFAULT_PAGE_SIZE
        token = ev.optional_string(q, "continuationToken")
        rows = self.backend.store.query_instances(
            hub, statuses=list(q.runtimeStatus),
            created_from=ev.optional_seconds(q, "createdTimeFrom"),
            created_to=ev.optional_seconds(q, "createdTimeTo"),
            prefix=ev.optional_string(q, "instanceIdPrefix"),
            after=parse_instance_token(token) if token else None,
            limit=limit + 1,
        )
        rows, more = split_page(rows, limit)
        return pb.QueryInstancesResponse(
            orchestrationState=[instance_state(r, q.fetchInputsAndOutputs) for r in rows],
            continuationToken=ev.string(instance_token(rows[-1])) if more else None,
        )

    @_rpc
    def ListInstanceIds(self, request: pb.ListInstanceIdsRequest, context):
        hub = self._hub(context)
        limit = request.pageSize if request.pageSize > 0 else DEFAULT_PAGE_SIZE
        token = ev.optional_string(request, "lastInstanceKey")
        rows = self.backend.store.query_instances(
            hub, statuses=list(request.runtimeStatus),
            completed_from=ev.optional_seconds(request, "completedTimeFrom"),
            completed_to=ev.optional_seconds(request, "completedTimeTo"),
            after=parse_instance_token(token) if token else None,
            limit=limit + 1,
        )
        rows, more = split_page(rows, limit)
        return pb.ListInstanceIdsResponse(
            instanceIds=[r.instance_id for r in rows],
            lastInstanceKey=ev.string(instance_token(rows[-1])) if more else None,
        )

    @_rpc
    def StreamInstanceHistory(self, request: pb.StreamInstanceHistoryRequest, context):
        hub = self._hub(context)
        if self.backend.store.peek_instance(hub, request.instanceId) is None:
            raise NotFound(f"no orchestration instance '{request.instanceId}' in task hub '{hub}'")
        blobs = self.backend.store.history(hub, request.instanceId)
        return iter([
            pb.HistoryChunk(events=[ev.parse(b) for b in blobs[i:i + HISTORY_CHUNK]])
            for i in range(0, len(blobs), HISTORY_CHUNK)
        ])

    # -- task hubs ----------------------------------------------------------------

    @_rpc
    def CreateTaskHub(self, request: pb.CreateTaskHubRequest, context):
        hub = self._hub(context)
        if request.recreateIfExists:
            self._delete_hub(hub)
        return pb.CreateTaskHubResponse()

    @_rpc
    def DeleteTaskHub(self, request, context):
        self._delete_hub(self._hub(context))
        return pb.DeleteTaskHubResponse()

    def _delete_hub(self, hub: str) -> None:
        with self.backend.lock:
            self.backend.store.delete_hub(hub)
            self.backend.dispatch.clear_hub(hub)
            self.backend.changed.notify_all()

    # -- workers ------------------------------------------------------------------

    def GetWorkItems(self, request: pb.GetWorkItemsRequest, context):
        hub = self._hub(context)
        backend = self.backend
        stream = backend.open_stream()
        context.add_callback(lambda: backend.close_stream(stream))
        feeder = Feeder(backend, hub, stream, Filters.from_request(request), limits_from_request(request))
        log.info("worker stream %d connected to task hub %s", stream, hub)
        try:
            while context.is_active() and not backend.stream_closed(stream):
                item = feeder.next(HEALTH_PING_SECONDS)
                if backend.stream_closed(stream):
                    if item is not None:
                        backend.abandon(item.completionToken)
                    break
                yield item if item is not None else pb.WorkItem(healthPing=pb.HealthPing())
        finally:
            backend.close_stream(stream)
            log.info("worker stream %d disconnected", stream)

    @_rpc
    def CompleteOrchestratorTask(self, request: pb.OrchestratorResponse, context):
        self._hub(context)
        orchestrations.complete(self.backend, request)
        return pb.CompleteTaskResponse()

    @_rpc
    def CompleteActivityTask(self, request: pb.ActivityResponse, context):
        self._hub(context)
        activities.complete(self.backend, request)
        return pb.CompleteTaskResponse()

    @_rpc
    def CompleteEntityTask(self, request: pb.EntityBatchResult, context):
        self._hub(context)
        entities.complete(self.backend, request)
        return pb.CompleteTaskResponse()

    def _abandon(self, token: str, context):
        self._hub(context)
        self.backend.abandon(token)

    @_rpc
    def AbandonTaskOrchestratorWorkItem(self, request, context):
        self._abandon(request.completionToken, context)
        return pb.AbandonOrchestrationTaskResponse()

    @_rpc
    def AbandonTaskActivityWorkItem(self, request, context):
        self._abandon(request.completionToken, context)
        return pb.AbandonActivityTaskResponse()

    @_rpc
    def AbandonTaskEntityWorkItem(self, request, context):
        self._abandon(request.completionToken, context)
        return pb.AbandonEntityTaskResponse()

    # -- entities -------------------------------------------------------------------

    @_rpc
    def SignalEntity(self, request: pb.SignalEntityRequest, context):
        hub = self._hub(context)
        _require(check_entity_id(request.instanceId))
        if not request.name:
            raise BadRequest("entity operation name must not be empty")
        entities.signal(self.backend, hub, request)
        return pb.SignalEntityResponse()

    @_rpc
    def GetEntity(self, request: pb.GetEntityRequest, context):
        hub = self._hub(context)
        _require(check_entity_id(request.instanceId))
        row = self.backend.store.get_entity(hub, request.instanceId)
        if row is None or row.state is None:
            return pb.GetEntityResponse(exists=False)
        return pb.GetEntityResponse(exists=True, entity=entities.metadata(self.backend, row, request.includeState))

    @_rpc
    def QueryEntities(self, request: pb.QueryEntitiesRequest, context):
        hub, q = self._hub(context), request.query
        limit = q.pageSize.value if q.HasField("pageSize") and q.pageSize.value > 0 else DEFAULT_PAGE_SIZE
        rows = self.backend.store.query_entities(
            hub, prefix=ev.optional_string(q, "instanceIdStartsWith"),
            modified_from=ev.optional_seconds(q, "lastModifiedFrom"),
            modified_to=ev.optional_seconds(q, "lastModifiedTo"),
            after=ev.optional_string(q, "continuationToken"),
            limit=limit + 1,
        )
        rows, more = split_page(rows, limit)
        last = rows[-1].instance_id if more else None
        if not q.includeTransient:
            rows = [r for r in rows if r.state is not None]
        return pb.QueryEntitiesResponse(
            entities=[entities.metadata(self.backend, r, q.includeState) for r in rows],
            continuationToken=ev.string(last),
        )

    @_rpc
    def CleanEntityStorage(self, request: pb.CleanEntityStorageRequest, context):
        removed, released = entities.clean(self.backend, self._hub(context), request.removeEmptyEntities,
                                           request.releaseOrphanedLocks)
        return pb.CleanEntityStorageResponse(emptyEntitiesRemoved=removed, orphanedLocksReleased=released)
