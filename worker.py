"""The worker: a durable counter entity and an orchestration that uses it.

Run it against a scheduler (``python -m emulator``, the DTS Docker emulator, or
Durable Task Scheduler in Azure; see settings.py) and it serves both until it is
stopped with Ctrl-C or SIGTERM. Importing this module starts nothing.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from durabletask import entities, task
from durabletask.azuremanaged.worker import DurableTaskSchedulerWorker

import settings

log = logging.getLogger("worker")

OPERATIONS = ("add", "subtract", "get", "reset")


def _amount(operation: str, value: Any) -> int:
    # bool is an int subclass in Python; True is not a sensible amount.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"operation '{operation}' needs an integer amount, got {value!r}")
    return value


def counter(ctx: entities.EntityContext, value: Any = None) -> int:
    """A counter whose value the scheduler persists between operations and restarts."""
    operation = ctx.operation
    current = ctx.get_state(int, 0)
    if operation == "add":
        current += _amount(operation, value)
    elif operation == "subtract":
        current -= _amount(operation, value)
    elif operation == "reset":
        current = 0
    elif operation != "get":
        raise ValueError(f"unknown operation '{operation}'; the counter supports: {', '.join(OPERATIONS)}")
    if operation != "get":
        ctx.set_state(current)
    log.info("counter '%s': %s -> %d", ctx.entity_id.key, operation, current)
    return current


def counter_workflow(ctx: task.OrchestrationContext, entity_key: str):
    """Three fire-and-forget signals, then one call that waits for the answer.

    Signals from one sender arrive in order, so the ``get`` call sees all three.
    """
    counter_id = entities.EntityInstanceId("counter", entity_key)
    ctx.signal_entity(counter_id, "add", 10)
    ctx.signal_entity(counter_id, "add", 5)
    ctx.signal_entity(counter_id, "subtract", 3)
    value = yield ctx.call_entity(counter_id, "get")
    return f"Counter '{entity_key}' final value: {value}"


def build_worker(config: settings.Settings) -> DurableTaskSchedulerWorker:
    worker = DurableTaskSchedulerWorker(
        host_address=config.endpoint,
        taskhub=config.taskhub,
        token_credential=config.credential(),
        secure_channel=config.secure_channel,
        concurrency_options=config.concurrency_options(),
    )
    for name in (worker.add_entity(counter), worker.add_orchestrator(counter_workflow)):
        log.info("registered %s", name)
    return worker


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = settings.load()
    except settings.SettingsError as exc:
        log.error("invalid settings: %s", exc)
        return 2
    log.info("endpoint %s, task hub %s, authentication %s", config.endpoint, config.taskhub, config.auth_mode)
    worker = build_worker(config)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    worker.start()
    log.info("worker started; press Ctrl-C to stop")
    stop.wait()
    log.info("stopping")
    worker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
