"""The gRPC service's entity methods: signal, read, query and clean entities."""

from __future__ import annotations

from durabletask.internal import orchestrator_service_pb2 as pb

from . import entities
from . import events as ev
from .paging import split_page
from .rpc import DEFAULT_PAGE_SIZE, Servicer, require, rpc
from .validation import check_entity_id, check_name


class EntityCalls(Servicer):
    @rpc
    async def SignalEntity(self, request: pb.SignalEntityRequest, context):
        hub = self._hub(context)
        require(check_entity_id(request.instanceId))
        require(check_name("entity operation name", request.name))
        entities.signal(self.backend, hub, request)
        return pb.SignalEntityResponse()

    @rpc
    async def GetEntity(self, request: pb.GetEntityRequest, context):
        hub = self._hub(context)
        require(check_entity_id(request.instanceId))
        row = self.backend.entity(hub, request.instanceId)
        if row is None or row.state is None:
            return pb.GetEntityResponse(exists=False)
        found, _ = self._fitting([entities.metadata(self.backend, row, request.includeState)],
                                 lambda e: f"entity '{e.instanceId}'")
        return pb.GetEntityResponse(exists=True, entity=found[0])

    @rpc
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

    @rpc
    async def CleanEntityStorage(self, request: pb.CleanEntityStorageRequest, context):
        removed, released = entities.clean(self.backend, self._hub(context), request.removeEmptyEntities,
                                           request.releaseOrphanedLocks)
        return pb.CleanEntityStorageResponse(emptyEntitiesRemoved=removed, orphanedLocksReleased=released)
