"""The gRPC face's common ground: the engine's failures as status codes, the size limits, the task hub.

Each method runs under :func:`rpc`: a known failure becomes a gRPC status with a message that
names the problem, anything else INTERNAL, and the server never crashes. :class:`Servicer` is
what every group of methods builds on: the engine, and the task hub a call names.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import grpc

from . import entities
from .backend import STORAGE_ERRORS, Backend, OverLimit, ShuttingDown, StaleWorkItem
from .control import InvalidState, NotFound

if TYPE_CHECKING:
    from .workers import Registry

log = logging.getLogger("dts_emulator.service")
T = TypeVar("T")

HEALTH_PING_SECONDS = 20.0
DEFAULT_PAGE_SIZE = 100
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


async def abort(backend: Backend, context: grpc.aio.ServicerContext, name: str, exc: Exception) -> None:
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


def rpc(method):
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
                await abort(self.backend, context, method.__name__, exc)
        return stream

    @functools.wraps(method)
    async def unary(self, request, context):
        try:
            check_size(self.backend, method.__name__, request)
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await abort(self.backend, context, method.__name__, exc)

    return unary


def require(problem: str | None) -> None:
    if problem is not None:
        raise BadRequest(problem)



def check_size(backend: Backend, name: str, request) -> None:
    """Refuse a request beyond the limit; a worker's answer that large also fails its work item.

    Otherwise a worker whose result is too large (the SDK's worker sends any size) would
    hold its work item until it disconnects, and get it again, forever.
    """
    size, limit = request.ByteSize(), backend.max_message_bytes
    if size <= limit:
        return
    problem = (f"the {name} request is {size} bytes; the emulator accepts at most {limit} bytes per message "
               "(--max-request-bytes)")
    if name.startswith("Complete"):
        backend.fail_work(backend.release(request.completionToken), problem)
    raise RequestTooLarge(problem)



class Servicer:
    """The engine and the task hub a call names: what every group of the service's methods uses."""

    def __init__(self, backend: Backend, health_ping_seconds: float, hub_management: bool, workers: Registry):
        self.backend = backend
        self.workers = workers  # for the dashboard's workers view
        self.health_ping_seconds = health_ping_seconds
        self.hub_management = hub_management  # CreateTaskHub/DeleteTaskHub for hubs not named at start-up
        self.startup_hubs = frozenset(backend.hubs)

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

