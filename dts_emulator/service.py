"""The gRPC face of the emulator: ``TaskHubSidecarService`` on ``grpc.aio``, protobuf in and out.

Each method picks the task hub from the ``taskhub`` header, checks its input
against DTS's limits, calls into the engine, and turns known failures into gRPC
status codes with messages that name the problem (``rpc.py``). Methods run on the engine's
event loop: a change runs to completion without awaiting, waits and worker streams
are awaiting coroutines (no thread each), and list queries go to the store's reader.
No SQL here, and no direct use of the store. The methods come in groups:
``service_instances.py``, ``service_workers.py`` and ``service_entities.py``.
"""

from __future__ import annotations

from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc
from google.protobuf import empty_pb2

from . import hubs
from .backend import Backend
from .rpc import HEALTH_PING_SECONDS, require, rpc
from .service_entities import EntityCalls
from .service_instances import InstanceCalls
from .service_workers import WorkerCalls
from .workers import Registry


class TaskHubService(InstanceCalls, WorkerCalls, EntityCalls, pb_grpc.TaskHubSidecarServiceServicer):
    def __init__(self, backend: Backend, health_ping_seconds: float = HEALTH_PING_SECONDS,
                 hub_management: bool = False, workers: Registry | None = None):
        super().__init__(backend, health_ping_seconds, hub_management,
                         workers if workers is not None else Registry(backend.clock))

    @rpc
    async def Hello(self, request, context):
        self._hub(context)
        return empty_pb2.Empty()

    # -- task hubs ----------------------------------------------------------------

    @rpc
    async def CreateTaskHub(self, request: pb.CreateTaskHubRequest, context):
        name = self._hub_name(context)
        if self.hub_management and name not in self.backend.hubs:
            require(hubs.check_name(name))
            hubs.create(self.backend, name)
            return pb.CreateTaskHubResponse()
        hub = self._hub(context)
        if request.recreateIfExists:
            self.backend.delete_hub(hub)
        return pb.CreateTaskHubResponse()

    @rpc
    async def DeleteTaskHub(self, request, context):
        hub = self._hub(context)
        hubs.delete(self.backend, hub, keep_serving=not self.hub_management or hub in self.startup_hubs)
        return pb.DeleteTaskHubResponse()

