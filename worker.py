"""The worker: a counter, bank accounts with an audit trail, and the orchestrations that use them.

Run it against a scheduler (``python -m emulator``, the DTS Docker emulator, or
Durable Task Scheduler in Azure; see settings.py) and it serves them until it is
stopped with Ctrl-C or SIGTERM. Importing this module starts nothing.

Part 1 is the counter (a function-based entity). Parts 2-4 are accounts (a class-based
entity): ``transfer_funds`` locks two of them, an account signals its ``audit`` entity
on a large deposit, and starts ``audit_workflow`` on a large withdrawal.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from durabletask import entities, task
from durabletask.azuremanaged.worker import DurableTaskSchedulerWorker

import settings

log = logging.getLogger("worker")

OPERATIONS = ("add", "subtract", "get", "reset")
AUDIT_THRESHOLD = 500  # a deposit or withdrawal of this much or more is audited
AUDIT_ENTRIES_KEPT = 20  # the audit entity keeps the newest entries; its count covers them all


def _amount(operation: str, value: Any) -> int:
    # bool is an int subclass in Python; True is not a sensible amount.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"operation '{operation}' needs an integer amount, got {value!r}")
    return value


# -- Part 1: a counter entity, and an orchestration that signals and calls it ------------------

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


# -- Parts 2-4: accounts, their audit trail, transfers in a critical section -------------------

def _positive(operation: str, value: Any) -> int:
    amount = _amount(operation, value)
    if amount <= 0:
        raise ValueError(f"operation '{operation}' needs a positive amount, got {amount}")
    return amount


class Account(entities.DurableEntity):
    """A balance that never goes negative. Each public method is an operation."""

    def deposit(self, amount: int) -> int:
        amount = _positive("deposit", amount)
        balance = self.balance() + amount
        self.set_state(balance)
        if amount >= AUDIT_THRESHOLD:
            # Part 3: an entity signals another entity. Fire-and-forget: it is sent only if this
            # operation succeeds, and the account does not wait for the audit entity.
            self.signal_entity(_audit_id(self), "record", {"event": "large deposit", "amount": amount,
                                                           "balance": balance})
        return balance

    def withdraw(self, amount: int) -> int:
        amount = _positive("withdraw", amount)
        balance = self.balance()
        if amount > balance:
            # Raising rolls this operation back: no state change, no signal, no orchestration.
            raise ValueError(f"insufficient funds in '{self.entity_context.entity_id.key}': "
                             f"balance {balance}, requested {amount}")
        balance -= amount
        self.set_state(balance)
        if amount >= AUDIT_THRESHOLD:
            # Part 4: an entity starts an orchestration, and notes its ID in the audit trail.
            withdrawal = {"account": self.entity_context.entity_id.key, "amount": amount, "balance": balance}
            instance_id = self.schedule_new_orchestration("audit_workflow", input=withdrawal)
            self.signal_entity(_audit_id(self), "record", {"event": "large withdrawal", "amount": amount,
                                                           "balance": balance, "workflow": instance_id})
        return balance

    def balance(self) -> int:
        return self.get_state(int, 0)

    def reset(self) -> None:
        self.set_state(0)


def _audit_id(account: Account) -> entities.EntityInstanceId:
    """Each account has its own audit trail: the ``audit`` entity with the same key.

    A module function, not a method: every attribute of a DurableEntity can be invoked as an operation.
    """
    return entities.EntityInstanceId("audit", account.entity_context.entity_id.key)


class Audit(entities.DurableEntity):
    """An account's audit trail: the newest entries, each numbered, and how many there were."""

    def record(self, entry: dict) -> int:
        if not isinstance(entry, dict) or not isinstance(entry.get("event"), str):
            raise ValueError(f"an audit entry is an object with an 'event' string, got {entry!r}")
        trail = self.get_state(dict, {"count": 0, "entries": []})
        trail["count"] += 1
        trail["entries"] = [*trail["entries"], {"seq": trail["count"], **entry}][-AUDIT_ENTRIES_KEPT:]
        self.set_state(trail)
        return trail["count"]


def _transfer_request(value: Any) -> tuple[str, str, int]:
    if not isinstance(value, dict) or not {"from", "to", "amount"} <= value.keys():
        raise ValueError(f"a transfer is an object with 'from', 'to' and 'amount', got {value!r}")
    source, target = value["from"], value["to"]
    for key in (source, target):
        if not isinstance(key, str) or not key or "@" in key:
            raise ValueError(f"an account key is a non-empty string without '@', got {key!r}")
    if source == target:
        raise ValueError(f"a transfer needs two different accounts, got '{source}' twice")
    return source, target, _positive("transfer", value["amount"])


def transfer_funds(ctx: task.OrchestrationContext, transfer: dict):
    """Part 2: move money between two accounts inside a critical section.

    While the orchestration holds both locks, no other operation reaches either account, so
    the balance it checks is the balance it withdraws from, and nobody sees the money in flight.
    """
    source_key, target_key, amount = _transfer_request(transfer)
    source = entities.EntityInstanceId("account", source_key)
    target = entities.EntityInstanceId("account", target_key)
    with (yield ctx.lock_entities([source, target])):
        balance = yield ctx.call_entity(source, "balance")
        if balance < amount:
            return {"transferred": 0,
                    "refused": f"insufficient funds in '{source_key}': balance {balance}, requested {amount}"}
        source_balance = yield ctx.call_entity(source, "withdraw", amount)
        target_balance = yield ctx.call_entity(target, "deposit", amount)
    return {"transferred": amount, "balances": {source_key: source_balance, target_key: target_balance}}


def process_audit(ctx: task.ActivityContext, withdrawal: dict) -> str:
    """Review a large withdrawal: one that takes more than the account keeps is flagged."""
    verdict = "flagged" if withdrawal["amount"] > withdrawal["balance"] else "approved"
    return (f"withdrawal of {withdrawal['amount']} from '{withdrawal['account']}' {verdict}, "
            f"balance {withdrawal['balance']}")


def audit_workflow(ctx: task.OrchestrationContext, withdrawal: dict):
    """Part 4: started by an account; reviews the withdrawal and records the verdict in the audit trail."""
    verdict = yield ctx.call_activity(process_audit, input=withdrawal)
    ctx.signal_entity(entities.EntityInstanceId("audit", withdrawal["account"]), "record",
                      {"event": "audit completed", "workflow": ctx.instance_id, "result": verdict})
    return verdict


def register(worker) -> list[str]:
    """Add everything this sample serves to ``worker`` (this module's or a test's); returns the names."""
    return [worker.add_entity(counter), worker.add_orchestrator(counter_workflow),
            worker.add_entity(Account, name="account"), worker.add_entity(Audit, name="audit"),
            worker.add_orchestrator(transfer_funds), worker.add_orchestrator(audit_workflow),
            worker.add_activity(process_audit)]


def build_worker(config: settings.Settings) -> DurableTaskSchedulerWorker:
    worker = DurableTaskSchedulerWorker(
        host_address=config.endpoint,
        taskhub=config.taskhub,
        token_credential=config.credential(),
        secure_channel=config.secure_channel,
        concurrency_options=config.concurrency_options(),
        logger=sdk_logger(config.endpoint),
    )
    for name in register(worker):
        log.info("registered %s", name)
    return worker


class NoSchedulerFilter(logging.Filter):
    """The SDK logs a 5-line gRPC dump per failed connection attempt; when nothing answers, one line says so."""

    def __init__(self, endpoint: str):
        super().__init__()
        self.endpoint = endpoint
        self.unavailable = False

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Failed to create connection"):
            self.unavailable = "StatusCode.UNAVAILABLE" in message
            return not self.unavailable
        if self.unavailable and message.startswith("Connection failed, "):
            record.msg, record.args = f"no scheduler answers at {self.endpoint}; {message[19:]}", ()
        return True


def sdk_logger(endpoint: str) -> logging.Logger:
    """The SDK worker's logger: ours (the same format as the rest), with its connection retries in one line each."""
    logger = logging.getLogger("durabletask-worker")
    for old in [f for f in logger.filters if isinstance(f, NoSchedulerFilter)]:
        logger.removeFilter(old)
    logger.addFilter(NoSchedulerFilter(endpoint))
    return logger


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return argparse.ArgumentParser(
        description="Serve the sample's entities, orchestrations and activity until Ctrl-C or SIGTERM.",
        epilog="Where the scheduler is comes from the environment: ENDPOINT (default http://localhost:8080) and "
               f"TASKHUB (default default), or {settings.CONNECTION_STRING_VARIABLE}; see settings.py.",
    ).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = settings.load()
    except settings.SettingsError as exc:
        log.error("invalid settings: %s", exc)
        return 2
    log.info("endpoint %s, task hub %s, authentication %s", config.endpoint, config.taskhub, config.auth_mode)
    worker = build_worker(config)
    life = settings.Lifecycle("worker")  # SIGTERM or Ctrl-C: stop within settings.STOP_SECONDS
    life.on_signals()
    life.serve_health()
    worker.start()
    life.ready()
    log.info("worker started; press Ctrl-C to stop")
    # Python runs signal handlers on the main thread, and one the kernel hands to another thread
    # does not wake a main thread blocked in a plain wait: wake each second so that it runs.
    while not life.stopping.wait(1.0):
        pass
    log.info("stopping")
    worker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
