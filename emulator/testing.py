"""The emulator inside a test process: start it on a free port, point workers and clients at it, stop it.

    from emulator.testing import Emulator

    with Emulator(time_skipping=True) as emu:
        worker = DurableTaskSchedulerWorker(host_address=emu.endpoint, taskhub=emu.taskhub,
                                            token_credential=None, secure_channel=False)
        ...

It is the same engine and gRPC service as ``python -m emulator`` (in memory unless given a
file), on its own thread, so a test talks to it over a real loopback connection. The
pytest plugin (``emulator.pytest_plugin``) builds its ``dts_emulator`` fixture on it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

from . import diagnose
from .server import EmulatorServer, Options
from .store import Store

T = TypeVar("T")

# Longest a call on the engine's loop may take before the test is told.
CALL_TIMEOUT = 30.0
# How often wait_for_entity reads the entity: the engine has no "entity changed" notification.
ENTITY_POLL_SECONDS = 0.01


class Emulator:
    """A running emulator for tests: ``endpoint``, ``taskhub``, and control over its clock.

    ``data``: a SQLite file, or None (the default) to keep everything in memory.
    ``time_skipping``: whenever no work item is running or ready, the clock jumps to
    the next timer, delayed message or scheduled start. Other keyword arguments are
    ``emulator.server.Options`` (``liveness_timeout``, ``max_waiters``, ...); ``store``, one
    already open instead of ``data``'s (tests give one whose commits fail).
    """

    def __init__(self, data: Path | str | None = None, *, task_hubs: tuple[str, ...] = ("default",),
                 time_skipping: bool = False, host: str = "127.0.0.1", port: int = 0, dashboard_port: int = 0,
                 store: Store | None = None, **options: Any):
        if not task_hubs:
            raise ValueError("at least one task hub name is needed")
        self.server = EmulatorServer(Options(
            host=host, port=port, dashboard_port=dashboard_port, data=None if data is None else Path(data),
            task_hubs=tuple(task_hubs), time_skipping=time_skipping, **options), store=store)
        self.port: int | None = None

    # -- life ------------------------------------------------------------------------

    def start(self) -> Emulator:
        self.port = self.server.start()
        return self

    def stop(self) -> None:
        """Stop serving (workers' streams end) and close the store; safe to call twice."""
        self.server.stop()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- where it is -----------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """``http://host:port``: what ``DurableTaskSchedulerWorker``/``Client`` take as ``host_address``."""
        return f"http://{self.address}"

    @property
    def address(self) -> str:
        """``host:port``: what ``TaskHubGrpcWorker``/``Client`` take as ``host_address``."""
        if self.port is None:
            raise RuntimeError("the emulator is not started")
        host = self.server.options.host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    @property
    def taskhub(self) -> str:
        """The first task hub (``default`` unless given others)."""
        return self.server.options.task_hubs[0]

    @property
    def task_hubs(self) -> tuple[str, ...]:
        return self.server.options.task_hubs

    @property
    def dashboard(self) -> str | None:
        """The dashboard's URL, when started with a ``dashboard_port``."""
        return self.server.dashboard_url

    @property
    def backend(self):
        """The engine, for assertions on its state: touch it only through ``on_loop`` or ``call``."""
        return self.server.backend

    # -- the clock -------------------------------------------------------------------

    @property
    def time_skipping(self) -> bool:
        return self.backend.clock.skipping

    @time_skipping.setter
    def time_skipping(self, on: bool) -> None:
        """Turn time skipping on or off while running (e.g. to raise an event before a timer fires)."""
        self.on_loop(lambda: self.backend.set_time_skipping(on))

    def now(self) -> datetime:
        """The emulator's time (UTC): what orchestrations see as ``current_utc_datetime``."""
        return datetime.fromtimestamp(self.backend.clock.now(), tz=timezone.utc)

    def advance(self, by: timedelta | float) -> datetime:
        """Move the clock forward by a duration (or seconds); what comes due runs. Returns the new time.

        A move past 9999-12-31 (what the engine's timestamps hold) is a ValueError, and the clock stays.
        """
        seconds = by.total_seconds() if isinstance(by, timedelta) else float(by)
        self.on_loop(lambda: self.backend.advance_clock(seconds))
        return self.now()

    def reset(self, time_skipping: bool = False) -> None:
        """Empty every task hub and return to the wall clock: a fresh emulator on the same endpoint.

        Connected workers stay connected; a work item they still hold from before is stale.
        """
        self.on_loop(lambda: self.backend.reset(time_skipping))

    # -- what a test waits for ------------------------------------------------------

    def unfinished(self) -> str:
        """Each unfinished orchestration and what it waits for (a timer, an entity lock, a name no worker
        serves, ...), one block per instance; '' when every instance finished. The pytest plugin adds
        this to a failed test's report."""
        return self.on_loop(self._unfinished_on_loop)

    def _unfinished_on_loop(self) -> str:
        return diagnose.describe(self.backend, self.server.workers)

    def entity_state(self, entity, as_type: type | None = None, hub: str | None = None) -> Any:
        """An entity's state (None: no such entity, or no state), read from the engine.

        ``entity``: an ``EntityInstanceId`` or its string ``@name@key``. ``as_type``: the state
        checked to be of this type, or a class built from a JSON object's fields (a dataclass).
        """
        row = self.on_loop(lambda: self.backend.entity(hub or self.taskhub, _entity_id(entity)))
        if row is None or row.state is None:
            return None
        return typed(json.loads(row.state), as_type, _entity_id(entity))

    def wait_for_entity(self, entity, until: Callable[[Any], bool] | None = None, timeout: float = 10.0,
                        as_type: type | None = None, hub: str | None = None) -> Any:
        """Wait until the entity has a state for which ``until(state)`` is true (any state, without it); return it.

        Signals are one-way: this is how a test sees them land. On timeout, a TimeoutError says
        what the entity holds, how many operations wait in its inbox, and what unfinished
        orchestrations wait for.
        """
        entity_id, hub = _entity_id(entity), hub or self.taskhub
        deadline = time.monotonic() + timeout
        while True:
            state = self.entity_state(entity_id, as_type, hub)
            if state is not None and (until is None or until(state)):
                return state
            if time.monotonic() >= deadline:
                raise TimeoutError(self._entity_report(entity_id, hub, state, timeout))
            time.sleep(ENTITY_POLL_SECONDS)  # nothing to await: the engine does not announce entity changes

    def _entity_report(self, entity_id: str, hub: str, state: Any, timeout: float) -> str:
        def read():
            row = self.backend.entity(hub, entity_id)
            return (row.lock_owner if row else None), self.backend.backlog(hub, entity_id), self._unfinished_on_loop()

        holder, backlog, unfinished = self.on_loop(read)
        lines = [f"entity '{entity_id}' did not reach the state waited for within {timeout:g}s; its state: {state!r}",
                 f"{backlog} operation(s) wait in its inbox" + (f"; it is locked by instance '{holder}'" if holder
                                                                 else "")]
        if unfinished:
            lines.append(unfinished)
        return "\n".join(lines)

    # -- the engine's loop -----------------------------------------------------------

    def on_loop(self, fn: Callable[[], T], timeout: float = CALL_TIMEOUT) -> T:
        """Run ``fn()`` on the engine's event loop, where the engine may be touched, and return its result."""
        async def run() -> T:
            return fn()

        return self.call(run(), timeout)

    def call(self, coroutine, timeout: float = CALL_TIMEOUT):
        """Run a coroutine on the engine's event loop and return its result."""
        if self.server.loop is None or self.port is None:
            coroutine.close()
            raise RuntimeError("the emulator is not started")
        return asyncio.run_coroutine_threadsafe(coroutine, self.server.loop).result(timeout)


def _entity_id(entity) -> str:
    text = str(entity)
    if text.count("@") < 2 or not text.startswith("@"):
        raise ValueError(f"an entity is an EntityInstanceId or '@name@key', not {entity!r}")
    return text


def typed(value: Any, as_type: type | None, what: str = "the state") -> Any:
    """``value`` (decoded JSON) as ``as_type``: checked when it is one already, built from a JSON object otherwise."""
    if as_type is None or value is None:
        return value
    if isinstance(value, as_type) and not (isinstance(value, bool) and as_type is not bool):
        return value
    if isinstance(value, dict) and not issubclass(as_type, dict):
        try:
            return as_type(**value)
        except TypeError as exc:
            raise TypeError(f"{what}: {value!r} does not make a {as_type.__name__}: {exc}") from None
    raise TypeError(f"{what}: {value!r} is a {type(value).__name__}, not a {as_type.__name__}")
