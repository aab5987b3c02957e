"""The gRPC service's orchestration instance methods: start, read, wait for, manage, list and purge."""

from __future__ import annotations

from durabletask.internal import orchestrator_service_pb2 as pb
from google.protobuf import wrappers_pb2

from . import control, force
from . import events as ev
from .control import NotFound
from .paging import instance_token, parse_instance_token, split_page
from .rpc import DEFAULT_PAGE_SIZE, AlreadyExists, BadRequest, Servicer, require, rpc
from .store import InstanceRow
from .validation import check_instance_id, check_name, field_size, message_size

HISTORY_CHUNK = 500


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



class InstanceCalls(Servicer):
    @rpc
    async def StartInstance(self, request: pb.CreateInstanceRequest, context):
        hub = self._hub(context)
        instance_id = request.instanceId or ev.new_id()
        require(check_instance_id(instance_id))
        require(check_name("orchestration name", request.name))
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

    @rpc
    async def GetInstance(self, request: pb.GetInstanceRequest, context):
        return self._found(self.backend.instance(self._hub(context), request.instanceId), request)

    async def _wait(self, request: pb.GetInstanceRequest, context, predicate) -> pb.GetInstanceResponse:
        hub = self._hub(context)
        return self._found(await self.backend.wait_for(hub, request.instanceId, predicate, context.time_remaining()),
                           request)

    @rpc
    async def WaitForInstanceStart(self, request, context):
        return await self._wait(request, context, lambda row: row.status != pb.ORCHESTRATION_STATUS_PENDING)

    @rpc
    async def WaitForInstanceCompletion(self, request, context):
        return await self._wait(request, context, lambda row: row.status in ev.TERMINAL)

    @rpc
    async def RaiseEvent(self, request: pb.RaiseEventRequest, context):
        require(check_name("event name", request.name))
        control.raise_event(self.backend, self._hub(context), request.instanceId, request.name,
                            ev.optional_string(request, "input"))
        return pb.RaiseEventResponse()

    @rpc
    async def TerminateInstance(self, request: pb.TerminateRequest, context):
        hub = self._hub(context)
        if self.backend.instance(hub, request.instanceId) is None:
            raise NotFound(f"no orchestration instance '{request.instanceId}' in task hub '{hub}'")
        control.terminate(self.backend, hub, request.instanceId, ev.optional_string(request, "output"),
                          request.recursive)
        return pb.TerminateResponse()

    @rpc
    async def SuspendInstance(self, request: pb.SuspendRequest, context):
        control.suspend(self.backend, self._hub(context), request.instanceId, ev.optional_string(request, "reason"))
        return pb.SuspendResponse()

    @rpc
    async def ResumeInstance(self, request: pb.ResumeRequest, context):
        control.resume(self.backend, self._hub(context), request.instanceId, ev.optional_string(request, "reason"))
        return pb.ResumeResponse()

    @rpc
    async def RestartInstance(self, request: pb.RestartInstanceRequest, context):
        new_id = control.restart(self.backend, self._hub(context), request.instanceId,
                                 request.restartWithNewInstanceId)
        return pb.RestartInstanceResponse(instanceId=new_id)

    @rpc
    async def RewindInstance(self, request: pb.RewindInstanceRequest, context):
        control.rewind(self.backend, self._hub(context), request.instanceId, ev.optional_string(request, "reason"))
        return pb.RewindInstanceResponse()

    @rpc
    async def SkipGracefulOrchestrationTerminations(self, request: pb.SkipGracefulOrchestrationTerminationsRequest,
                                                    context):
        hub = self._hub(context)
        ids = list(request.instanceBatch.instanceIds)
        require(force.check_batch(ids))
        left = force.skip_graceful_terminations(self.backend, hub, ids, ev.optional_string(request, "reason"))
        return pb.SkipGracefulOrchestrationTerminationsResponse(unterminatedInstanceIds=left)

    @rpc
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

    @rpc
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

    @rpc
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

    @rpc
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

