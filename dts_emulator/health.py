"""Is the emulator up, and does its store take writes? One report for every way of asking.

Asked by ``GET /healthz`` on the dashboard's port (the name Kubernetes and most container
probes use), by the standard gRPC health service ``grpc.health.v1.Health`` on the gRPC
port (Kubernetes' ``grpc`` probes, ``grpc_health_probe``), and by
``python -m dts_emulator --check ENDPOINT``, which asks the latter and exits 0 or 1.
The store is UNAVAILABLE when its last write failed and none has committed since, and
as soon as its data file was deleted or replaced (every write would be refused).
"""

from __future__ import annotations

import logging
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .backend import Backend

log = logging.getLogger("dts_emulator.health")
# The services a health Check may name: the whole server (""), or the one it serves.
SERVICES = ("", "TaskHubSidecarService")
CHECK_TIMEOUT = 5.0


class Clock:
    """When the emulator started, for the uptime (monotonic: a changed wall clock does not matter)."""

    def __init__(self):
        self.started = time.monotonic()

    def uptime(self) -> float:
        return time.monotonic() - self.started


def store_state(backend: Backend) -> tuple[str, str | None]:
    """("AVAILABLE", None), or ("UNAVAILABLE", the error) while writes fail."""
    failed = backend.storage_error
    if backend.closed:
        return "UNAVAILABLE", "the emulator is stopping"
    gone = backend.store.data_file_gone()
    if gone is not None:  # every write will be refused: say so before one is tried
        return "UNAVAILABLE", gone
    if failed is not None and failed[1] == backend.store.writes_committed:
        return "UNAVAILABLE", failed[0]
    return "AVAILABLE", None


def report(backend: Backend, clock: Clock) -> dict:
    state, error = store_state(backend)
    body = {
        "status": "ok" if state == "AVAILABLE" else "unavailable",
        "taskHubs": list(backend.hubs),
        "uptimeSeconds": round(clock.uptime(), 1),
        "store": {"state": state, "inMemory": backend.store.path is None},
        "workerStreams": backend.dispatch.open_streams(),
    }
    if error:
        body["store"]["error"] = error
    return body


class HealthService(health_pb2_grpc.HealthServicer):
    """``grpc.health.v1.Health/Check``: SERVING while the store takes writes. (Watch is not offered.)"""

    def __init__(self, backend: Backend):
        self.backend = backend

    async def Check(self, request: health_pb2.HealthCheckRequest, context):
        if request.service not in SERVICES and not request.service.endswith(".TaskHubSidecarService"):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service '{request.service}'")
        state, _ = store_state(self.backend)
        status = health_pb2.HealthCheckResponse.SERVING if state == "AVAILABLE" else \
            health_pb2.HealthCheckResponse.NOT_SERVING
        return health_pb2.HealthCheckResponse(status=status)


def check(endpoint: str, timeout: float = CHECK_TIMEOUT) -> tuple[bool, str]:
    """Ask an emulator's gRPC health service; (serving, what to tell the user)."""
    address = endpoint.split("://", 1)[-1].rstrip("/")
    try:
        with grpc.insecure_channel(address) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
    except grpc.RpcError as exc:
        return False, f"{endpoint}: no answer ({exc.code().name}: {exc.details()})"
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    return answer.status == health_pb2.HealthCheckResponse.SERVING, f"{endpoint}: {name}"
