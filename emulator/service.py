"""The gRPC face of the emulator: ``TaskHubSidecarService`` on ``grpc.aio``, protobuf in and out.

Each method picks the task hub from the ``taskhub`` header, checks its input
against DTS's limits, calls into the engine, and turns known failures into gRPC
status codes with messages that name the problem. Methods run on the engine's
event loop: a change runs to completion without awaiting, waits and worker streams
are awaiting coroutines (no thread each), and list queries go to the store's reader.
No SQL here, and no direct use of the store.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import TypeVar

import grpc
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc
from google.protobuf import empty_pb2, wrappers_pb2

from . import activities, control, entities, force, hubs, orchestrations
from . import events as ev
from .backend import STORAGE_ERRORS, Backend, OverLimit, ShuttingDown, StaleWorkItem
from .control import InvalidState, NotFound
from .paging import instance_token, parse_instance_token, split_page
from .store import ACTIVITY, ENTITY, ORCHESTRATION, InstanceRow
from .validation import check_entity_id, check_instance_id, check_name, field_size, message_size
from .workers import Registry
from .workitems import Feeder, Filters, limits_from_request

KINDS = (ORCHESTRATION, ACTIVITY, ENTITY)

log = logging.getLogger("emulator.service")
T = TypeVar("T")

HEALTH_PING_SECONDS = 20.0
DEFAULT_PAGE_SIZE = 100
HISTORY_CHUNK = 500
# What a response carries besides its instances or entities (a continuation token), and each one's header.
RESPONSE_ENVELOPE_BYTES = 256
FIELD_HEADER_BYTES = 6


class BadRequest(Exception):
    pass


class AlreadyExists(Exception):
    pass


class UnknownHub(Exception):
    pass


class RequestTooLarge(Exception):
    """A request beyond --max-request-bytes (gRPC itself refuses only far larger ones)."""


class ResponseTooLarge(Exception):
    """One instance or entity with its payloads is more than a client receives in a message."""


_CODES = [
    (BadRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (UnknownHub, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (entities.EntityStateTooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (OverLimit, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ResponseTooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (RequestTooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ShuttingDown, grpc.StatusCode.UNAVAILABLE),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (InvalidState, grpc.StatusCode.FAILED_PRECONDITION),
    (StaleWorkItem, grpc.StatusCode.FAILED_PRECONDITION),
    (TimeoutError, grpc.StatusCode.DEADLINE_EXCEEDED),
]


async def _abort(backend: Backend, context: grpc.aio.ServicerContext, name: str, exc: Exception) -> None:
    if isinstance(exc, STORAGE_ERRORS):  # one line, logged once per interval: it repeats while the disk is full
        backend.storage_failed(exc)
        full = getattr(exc, "full", False)
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED if full else grpc.StatusCode.UNAVAILABLE, str(exc))
    for kind, code in _CODES:
        if isinstance(exc, kind):
            log.debug("%s: %s: %s", name, code.name, exc)
            await context.abort(code, str(exc))
    log.exception("%s failed", name)
    await context.abort(grpc.StatusCode.INTERNAL, f"{name} failed: {exc}")


def _rpc(method):
    """Map the engine's exceptions to gRPC status codes; never crash the server."""
    if inspect.isasyncgenfunction(method):
        @functools.wraps(method)
        async def stream(self, request, context):
            try:
                async for item in method(self, request, context):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort(self.backend, context, method.__name__, exc)
        return stream

    @functools.wraps(method)
    async def unary(self, request, context):
        try:
            self._check_size(method.__name__, request)
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(self.backend, context, method.__name__, exc)

    return unary


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
    def __init__(self, backend: Backend, health_ping_seconds: float = HEALTH_PING_SECONDS,
                 hub_management: bool = False, workers: Registry | None = None):
        self.backend = backend
        self.workers = workers if workers is not None else Registry()  # for the dashboard's workers view
        self.health_ping_seconds = health_ping_seconds
        self.hub_management = hub_management  # CreateTaskHub/DeleteTaskHub for hubs not named at start-up
        self.startup_hubs = frozenset(backend.hubs)

    def _check_size(self, name: str, request) -> None:
        """Refuse a request beyond the limit; a worker's answer that large also fails its work item.

        Otherwise a worker whose result is too large (the SDK's worker sends any size) would
        hold its work item until it disconnects, and get it again, forever.
        """
        size, limit = request.ByteSize(), self.backend.max_message_bytes
        if size <= limit:
            return
        problem = (f"the {name} request is {size} bytes; the emulator accepts at most {limit} bytes per message "
                   "(--max-request-bytes)")
        if name.startswith("Complete"):
            self.backend.fail_work(self.backend.release(request.completionToken), problem)
        raise RequestTooLarge(problem)

    def _fitting(self, items: list[T], what: Callable[[T], str]) -> tuple[list[T], bool]:
        """The leading items that fit in one response (and whether some were left for the next page).

        Clients receive 4 MiB per message by default: a page of instances with their
        inputs and outputs, or of entities with their states, can be far more.
        """
        limit, size = self.backend.max_message_bytes, RESPONSE_ENVELOPE_BYTES
        for n, item in enumerate(items):
            size += item.ByteSize() + FIELD_HEADER_BYTES
            if size > limit:
                if n == 0:
                    raise ResponseTooLarge(
                        f"{what(item)} is {size - RESPONSE_ENVELOPE_BYTES} bytes with its payloads; a response may be "
                        f"at most {limit} bytes (--max-request-bytes): ask without inputs and outputs (or state)")
                return items[:n], True
        return items, False

    @staticmethod
    def _hub_name(context: grpc.aio.ServicerContext) -> str:
        return next((value for key, value in context.invocation_metadata() if key == "taskhub"), None) or "default"

    def _hub(self, context: grpc.aio.ServicerContext) -> str:
        hub = self._hub_name(context)
        if hub not in self.backend.hubs:
            known = ", ".join(self.backend.hubs)
            how = ("or create it with CreateTaskHub" if self.hub_management
                   else "or let clients create hubs with --allow-hub-management")
            raise UnknownHub(f"task hub '{hub}' does not exist; this emulator serves: {known} "
                             f"(add hubs with --task-hubs or DTS_TASK_HUB_NAMES, {how})")
        return hub

    @_rpc
    async def Hello(self, request, context):
        self._hub(context)
        return empty_pb2.Empty()

    # -- orchestration instances ---------------------------------------------------

    @_rpc
    async def StartInstance(self, request: pb.CreateInstanceRequest, context):
        hub = self._hub(context)
        instance_id = request.instanceId or ev.new_id()
        _require(check_instance_id(instance_id))
        _require(check_name("orchestration name", request.name))
        existing = self.backend.instance(hub, instance_id)
        if existing is not None:
            replaceable = set(request.orchestrationIdReusePolicy.replaceableStatus)
            if not request.HasField("orchestrationIdReusePolicy"):
                replaceable = set(ev.TERMINAL)
            if existing.status not in replaceable:
                status = pb.OrchestrationStatus.Name(existing.status)
                raise AlreadyExists(f"orchestration instance '{instance_id}' already exists with status {status}")
        self.backend.create_instance(
            hub, instance_id, request.name,
            version=ev.optional_string(request, "version"),
            input=ev.optional_string(request, "input"),
            tags=dict(request.tags),
            scheduled_start=ev.optional_seconds(request, "scheduledStartTimestamp"),
            parent_trace=request.parentTraceContext if request.HasField("parentTraceContext") else None,
        )
        return pb.CreateInstanceResponse(instanceId=instance_id)

    def _found(self, row: InstanceRow | None, request: pb.GetInstanceRequest) -> pb.GetInstanceResponse:
        if row is None:
            return pb.GetInstanceResponse(exists=False)
        state, _ = self._fitting([instance_state(row, request.getInputsAndOutputs)],
                                 lambda s: f"instance '{s.instanceId}'")
        return pb.GetInstanceResponse(exists=True, orchestrationState=state[0])

    @_rpc
    async def GetInstance(self, request: pb.GetInstanceRequest, context):
        return self._found(self.backend.instance(self._hub(context), request.instanceId), request)

    async def _wait(self, request: pb.GetInstanceRequest, context, predicate) -> pb.GetInstanceResponse:
        hub = self._hub(context)
        return self._found(await self.backend.wait_for(hub, request.instanceId, predicate, context.time_remaining()),
                           request)

    @_rpc
    async def WaitForInstanceStart(self, request, context):
        return await self._wait(request, context, lambda row: row.status != pb.ORCHESTRATION_STATUS_PENDING)

    @_rpc
    async def WaitForInstanceCompletion(self, request, context):
        return await self._wait(request, context, lambda row: row.status in ev.TERMINAL)

    @_rpc
    async def RaiseEvent(self, request: pb.RaiseEventRequest, context):
        _require(check_name("event name", request.name))
        control.raise_event(self.backend, self._hub(context), request.instanceId, request.name,
                            ev.optional_string(request, "input"))
        return pb.RaiseEventResponse()

    @_rpc
    async def TerminateInstance(self, request: pb.TerminateRequest, context):
        hub = self._hub(context)
        if self.backend.instance(hub, request.instanceId) is None:
            raise NotFound(f"no orchestration instance '{request.instanceId}' in task hub '{hub}'")
        control.terminate(self.backend, hub, request.instanceId, ev.optional_string(request, "output"),
                          request.recursive)
        return pb.TerminateResponse()

    @_rpc
    async def SuspendInstance(self, request: pb.SuspendRequest, context):
        control.suspend(self.backend, self._hub(context), request.instanceId, ev.optional_string(request, "reason"))
        return pb.SuspendResponse()

    @_rpc
    async def ResumeInstance(self, request: pb.ResumeRequest, context):
        control.resume(self.backend, self._hub(context), request.instanceId, ev.optional_string(request, "reason"))
        return pb.ResumeResponse()

    @_rpc
    async def RestartInstance(self, request: pb.RestartInstanceRequest, context):
        new_id = control.restart(self.backend, self._hub(context), request.instanceId,
                                 request.restartWithNewInstanceId)
        return pb.RestartInstanceResponse(instanceId=new_id)

    @_rpc
    async def RewindInstance(self, request: pb.RewindInstanceRequest, context):
        control.rewind(self.backend, self._hub(context), request.instanceId, ev.optional_string(request, "reason"))
        return pb.RewindInstanceResponse()

    @_rpc
    async def SkipGracefulOrchestrationTerminations(self, request: pb.SkipGracefulOrchestrationTerminationsRequest,
                                                    context):
        hub = self._hub(context)
        ids = list(request.instanceBatch.instanceIds)
        _require(force.check_batch(ids))
        left = force.skip_graceful_terminations(self.backend, hub, ids, ev.optional_string(request, "reason"))
        return pb.SkipGracefulOrchestrationTerminationsResponse(unterminatedInstanceIds=left)

    @_rpc
    async def PurgeInstances(self, request: pb.PurgeInstancesRequest, context):
        hub = self._hub(context)
        which = request.WhichOneof("request")
        if which == "instanceId":
            ids = [request.instanceId]
        elif which == "instanceBatch":
            ids = list(request.instanceBatch.instanceIds)
        elif which == "purgeInstanceFilter":
            f = request.purgeInstanceFilter
            statuses = list(f.runtimeStatus) or sorted(ev.TERMINAL)
            created_from = ev.optional_seconds(f, "createdTimeFrom")
            created_to = ev.optional_seconds(f, "createdTimeTo")
            rows = await self.backend.read(lambda r: r.query_instances(
                hub, statuses=statuses, created_from=created_from, created_to=created_to))
            ids = [row.instance_id for row in rows]
        else:
            raise BadRequest("PurgeInstances needs an instance ID, an instance batch or a filter")
        deleted = control.purge(self.backend, hub, ids, request.recursive)
        return pb.PurgeInstancesResponse(deletedInstanceCount=deleted, isComplete=wrappers_pb2.BoolValue(value=True))

    @_rpc
    async def QueryInstances(self, request: pb.QueryInstancesRequest, context):
        hub, q = self._hub(context), request.query
        limit = q.maxInstanceCount if q.maxInstanceCount > 0 else DEFAULT_PAGE_SIZE
        token = ev.optional_string(q, "continuationToken")
        query = dict(
            statuses=list(q.runtimeStatus),
            created_from=ev.optional_seconds(q, "createdTimeFrom"),
            created_to=ev.optional_seconds(q, "createdTimeTo"),
            prefix=ev.optional_string(q, "instanceIdPrefix"),
            after=parse_instance_token(token) if token else None,
            limit=limit + 1,
        )
        rows, more = split_page(await self.backend.read(lambda r: r.query_instances(hub, **query)), limit)
        states, cut = self._fitting([instance_state(r, q.fetchInputsAndOutputs) for r in rows],
                                    lambda s: f"instance '{s.instanceId}'")
        return pb.QueryInstancesResponse(
            orchestrationState=states,
            continuationToken=ev.string(instance_token(rows[len(states) - 1])) if more or cut else None,
        )

    @_rpc
    async def ListInstanceIds(self, request: pb.ListInstanceIdsRequest, context):
        hub = self._hub(context)
        limit = request.pageSize if request.pageSize > 0 else DEFAULT_PAGE_SIZE
        token = ev.optional_string(request, "lastInstanceKey")
        query = dict(
            statuses=list(request.runtimeStatus),
            completed_from=ev.optional_seconds(request, "completedTimeFrom"),
            completed_to=ev.optional_seconds(request, "completedTimeTo"),
            after=parse_instance_token(token) if token else None,
            limit=limit + 1,
        )
        rows, more = split_page(await self.backend.read(lambda r: r.query_instances(hub, **query)), limit)
        return pb.ListInstanceIdsResponse(
            instanceIds=[r.instance_id for r in rows],
            lastInstanceKey=ev.string(instance_token(rows[-1])) if more else None,
        )

    @_rpc
    async def StreamInstanceHistory(self, request: pb.StreamInstanceHistoryRequest, context):
        hub = self._hub(context)
        if self.backend.instance(hub, request.instanceId) is None:
            raise NotFound(f"no orchestration instance '{request.instanceId}' in task hub '{hub}'")
        chunk: list[bytes] = []
        size = empty = message_size(())
        for blob in self.backend.history(hub, request.instanceId):
            # Chunks by count and by size: a client receives 4 MiB per message by default.
            if chunk and (len(chunk) == HISTORY_CHUNK or size + field_size(blob) > self.backend.max_message_bytes):
                yield pb.HistoryChunk(events=[ev.parse(b) for b in chunk])
                chunk, size = [], empty
            chunk.append(blob)
            size += field_size(blob)
        if chunk:
            yield pb.HistoryChunk(events=[ev.parse(b) for b in chunk])

    # -- task hubs ----------------------------------------------------------------

    @_rpc
    async def CreateTaskHub(self, request: pb.CreateTaskHubRequest, context):
        name = self._hub_name(context)
        if self.hub_management and name not in self.backend.hubs:
            _require(hubs.check_name(name))
            hubs.create(self.backend, name)
            return pb.CreateTaskHubResponse()
        hub = self._hub(context)
        if request.recreateIfExists:
            self.backend.delete_hub(hub)
        return pb.CreateTaskHubResponse()

    @_rpc
    async def DeleteTaskHub(self, request, context):
        hub = self._hub(context)
        hubs.delete(self.backend, hub, keep_serving=not self.hub_management or hub in self.startup_hubs)
        return pb.DeleteTaskHubResponse()

    # -- workers ------------------------------------------------------------------

    @_rpc
    async def GetWorkItems(self, request: pb.GetWorkItemsRequest, context):
        """One worker's stream: work items as they become ready, health pings while idle.

        The stream ends when the worker goes away or stops answering HTTP/2 pings (the
        server's keepalive, see ``server.py``); what it held goes back to the queue.
        """
        hub = self._hub(context)
        backend = self.backend
        stream = backend.open_stream()
        filters = Filters.from_request(request)
        feeder = Feeder(backend, hub, stream, filters, limits_from_request(request))
        self.workers.opened(stream, hub, request.worker_instance_id, filters)
        log.info("worker stream %d connected to task hub %s", stream, hub)
        try:
            while not backend.stream_closed(stream):
                item = await feeder.next(self.health_ping_seconds)
                if backend.stream_closed(stream):
                    if item is not None:
                        backend.abandon(item.completionToken)
                    break
                if item is not None:
                    self.workers.gave(stream)
                yield item if item is not None else pb.WorkItem(healthPing=pb.HealthPing())
        finally:
            self.workers.closed(stream, sum(backend.dispatch.held(stream, kind) for kind in KINDS))
            backend.close_stream(stream)
            log.info("worker stream %d disconnected", stream)

    @_rpc
    async def CompleteOrchestratorTask(self, request: pb.OrchestratorResponse, context):
        self._hub(context)
        orchestrations.complete(self.backend, request)
        return pb.CompleteTaskResponse()

    @_rpc
    async def CompleteActivityTask(self, request: pb.ActivityResponse, context):
        self._hub(context)
        activities.complete(self.backend, request)
        return pb.CompleteTaskResponse()

    @_rpc
    async def CompleteEntityTask(self, request: pb.EntityBatchResult, context):
        self._hub(context)
        entities.complete(self.backend, request)
        return pb.CompleteTaskResponse()

    def _abandon(self, token: str, context):
        self._hub(context)
        self.backend.abandon(token)

    @_rpc
    async def AbandonTaskOrchestratorWorkItem(self, request, context):
        self._abandon(request.completionToken, context)
        return pb.AbandonOrchestrationTaskResponse()

    @_rpc
    async def AbandonTaskActivityWorkItem(self, request, context):
        self._abandon(request.completionToken, context)
        return pb.AbandonActivityTaskResponse()

    @_rpc
    async def AbandonTaskEntityWorkItem(self, request, context):
        self._abandon(request.completionToken, context)
        return pb.AbandonEntityTaskResponse()

    # -- entities -------------------------------------------------------------------

    @_rpc
    async def SignalEntity(self, request: pb.SignalEntityRequest, context):
        hub = self._hub(context)
        _require(check_entity_id(request.instanceId))
        _require(check_name("entity operation name", request.name))
        entities.signal(self.backend, hub, request)
        return pb.SignalEntityResponse()

    @_rpc
    async def GetEntity(self, request: pb.GetEntityRequest, context):
        hub = self._hub(context)
        _require(check_entity_id(request.instanceId))
        row = self.backend.entity(hub, request.instanceId)
        if row is None or row.state is None:
            return pb.GetEntityResponse(exists=False)
        found, _ = self._fitting([entities.metadata(self.backend, row, request.includeState)],
                                 lambda e: f"entity '{e.instanceId}'")
        return pb.GetEntityResponse(exists=True, entity=found[0])

    @_rpc
    async def QueryEntities(self, request: pb.QueryEntitiesRequest, context):
        hub, q = self._hub(context), request.query
        limit = q.pageSize.value if q.HasField("pageSize") and q.pageSize.value > 0 else DEFAULT_PAGE_SIZE
        query = dict(
            prefix=ev.optional_string(q, "instanceIdStartsWith"),
            modified_from=ev.optional_seconds(q, "lastModifiedFrom"),
            modified_to=ev.optional_seconds(q, "lastModifiedTo"),
            after=ev.optional_string(q, "continuationToken"),
            limit=limit + 1,
        )
        rows, more = split_page(await self.backend.read(lambda r: r.query_entities(hub, **query)), limit)
        last = rows[-1].instance_id if more else None
        if not q.includeTransient:
            rows = [r for r in rows if r.state is not None]
        found, cut = self._fitting([entities.metadata(self.backend, r, q.includeState) for r in rows],
                                   lambda e: f"entity '{e.instanceId}'")
        return pb.QueryEntitiesResponse(entities=found, continuationToken=ev.string(
            found[-1].instanceId if cut else last))

    @_rpc
    async def CleanEntityStorage(self, request: pb.CleanEntityStorageRequest, context):
        removed, released = entities.clean(self.backend, self._hub(context), request.removeEmptyEntities,
                                           request.releaseOrphanedLocks)
        return pb.CleanEntityStorageResponse(emptyEntitiesRemoved=removed, orphanedLocksReleased=released)
