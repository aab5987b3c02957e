"""The gRPC service's worker methods: the stream of work items, completions and abandons."""

from __future__ import annotations

import logging

from durabletask.internal import orchestrator_service_pb2 as pb

from . import activities, entities, orchestrations
from .rpc import Servicer, rpc
from .store import ACTIVITY, ENTITY, ORCHESTRATION
from .workitems import Feeder, Filters, limits_from_request

log = logging.getLogger("dts_emulator.service")

KINDS = (ORCHESTRATION, ACTIVITY, ENTITY)


class WorkerCalls(Servicer):
    @rpc
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
            self.workers.closed(stream, sum(backend.streams.held(stream, kind) for kind in KINDS))
            backend.close_stream(stream)
            log.info("worker stream %d disconnected", stream)

    @rpc
    async def CompleteOrchestratorTask(self, request: pb.OrchestratorResponse, context):
        self._hub(context)
        orchestrations.complete(self.backend, request)
        return pb.CompleteTaskResponse()

    @rpc
    async def CompleteActivityTask(self, request: pb.ActivityResponse, context):
        self._hub(context)
        activities.complete(self.backend, request)
        return pb.CompleteTaskResponse()

    @rpc
    async def CompleteEntityTask(self, request: pb.EntityBatchResult, context):
        self._hub(context)
        entities.complete(self.backend, request)
        return pb.CompleteTaskResponse()

    def _abandon(self, token: str, context):
        self._hub(context)
        self.backend.abandon(token)

    @rpc
    async def AbandonTaskOrchestratorWorkItem(self, request, context):
        self._abandon(request.completionToken, context)
        return pb.AbandonOrchestrationTaskResponse()

    @rpc
    async def AbandonTaskActivityWorkItem(self, request, context):
        self._abandon(request.completionToken, context)
        return pb.AbandonActivityTaskResponse()

    @rpc
    async def AbandonTaskEntityWorkItem(self, request, context):
        self._abandon(request.completionToken, context)
        return pb.AbandonEntityTaskResponse()

