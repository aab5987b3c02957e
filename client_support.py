"""What client.py's four parts share: reading entities until a signal lands, awaiting orchestrations,
printing what they read, checking the arguments, and the run loop (--repeat, gRPC errors).

client.py is the demo itself; this is its plumbing. The worker's names are here because both
the parts and the checks use them: the client knows the worker by names only, as a client in
another process, container or language does (tests/test_sample.py holds both to them).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import grpc
from durabletask import client as dt_client
from durabletask.azuremanaged.client import DurableTaskSchedulerClient
from durabletask.entities import EntityInstanceId

import settings

log = logging.getLogger("client")

# The worker's names and its audit threshold: the contract between client and worker.
COUNTER, ACCOUNT, AUDIT = "counter", "account", "audit"
COUNTER_WORKFLOW, TRANSFER_FUNDS, AUDIT_WORKFLOW = "counter_workflow", "transfer_funds", "audit_workflow"
AUDIT_THRESHOLD = 500
MAX_ENTITY_ID = 100
TIMEOUT_SECONDS = 60.0
SAME_KEYS_HINT = ("if another client (or `make demo`) uses the same keys at the same time, each sees the other's "
                  "changes: give this run keys of its own, e.g. `python client.py my-key --accounts mine-`")


# -- Reading entities, awaiting orchestrations, reporting -------------------------------------

def read_state(client, entity_id: EntityInstanceId) -> Any:
    metadata = client.get_entity(entity_id)
    return metadata.get_typed_state() if metadata else None


def wait_for(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float = TIMEOUT_SECONDS) -> Any:
    """Read until ``done(value)``; the last value on timeout. Signals are one-way: this is how we see them land."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        value = read()
        if done(value) or time.monotonic() >= deadline:
            return value
        time.sleep(delay)  # the scheduler offers no wait-for-entity call
        delay = min(delay * 2, 0.5)


def await_orchestration(client, instance_id: str) -> tuple[dt_client.OrchestrationState | None, str | None]:
    """The completed orchestration's state, or what went wrong as a line to print."""
    try:
        state = client.wait_for_orchestration_completion(instance_id, timeout=TIMEOUT_SECONDS)
    except TimeoutError:
        return None, f"Orchestration {instance_id} did not complete within {TIMEOUT_SECONDS:.0f}s"
    if state is not None and state.runtime_status == dt_client.OrchestrationStatus.COMPLETED:
        return state, None
    status = state.runtime_status.name if state else "MISSING"
    details = state.failure_details.message if state and state.failure_details else "no details"
    return state, f"Orchestration {instance_id} ended as {status}: {details}"


def balances(client, prefix: str) -> dict[str, int]:
    """The demo's two accounts (``prefix`` + A and B) that exist, found by an entity query.

    Other accounts whose keys start with the prefix (one made while exploring, say) are not
    the demo's: they are left out, so that they do not count in its totals.
    """
    query = dt_client.EntityQuery(instance_id_starts_with=f"@{ACCOUNT}@{prefix}")
    own = {f"{prefix}A", f"{prefix}B"}
    return {m.id.key: m.get_typed_state(int) for m in client.get_all_entities(query) if m.id.key in own}


def show_balances(client, prefix: str, expected: dict[str, int] | None = None) -> bool:
    """Print the balances once they hold ``expected`` (or at once); False if they never do."""
    settled = (lambda found: all(found.get(k) == v for k, v in expected.items())) if expected else bool
    found = wait_for(lambda: balances(client, prefix), settled)
    print("Balances: " + ", ".join(f"'{k}' {v}" for k, v in sorted(found.items())))
    if not settled(found):
        print(f"Expected {expected}")
        print(f"error: {SAME_KEYS_HINT}", file=sys.stderr)
    return settled(found)


def transfer(client, source: str, target: str, amount: int) -> dict | None:
    instance_id = client.schedule_new_orchestration(TRANSFER_FUNDS,
                                                    input={"from": source, "to": target, "amount": amount})
    state, problem = await_orchestration(client, instance_id)
    if problem:
        print(problem)
        return None
    return state.get_output()


def describe(result: dict, source: str, target: str) -> str:
    if result["transferred"]:
        return f"Transferred {result['transferred']} from '{source}' to '{target}'"
    return f"Refused: {result['refused']}"


def audit_count(client, account: str) -> int:
    trail = read_state(client, EntityInstanceId(AUDIT, account))
    return trail["count"] if trail else 0


def show_audit_entry(client, account: str, after: int, event: str, amount: int | None = None) -> dict | None:
    """Wait for the first audit entry numbered after ``after`` with this event (and amount), and print it."""

    def find(trail):
        for entry in (trail or {}).get("entries", []):
            if entry["seq"] > after and entry["event"] == event and amount in (None, entry.get("amount")):
                return entry
        return None

    entry = find(wait_for(lambda: read_state(client, EntityInstanceId(AUDIT, account)), find))
    if entry is None:
        print(f"No '{event}' entry reached the audit entity '{account}' within {TIMEOUT_SECONDS:.0f}s")
        return None
    text = event
    if "amount" in entry:
        text += f" of {entry['amount']}, balance {entry['balance']}"
    if "workflow" in entry and "result" not in entry:
        text += f", {AUDIT_WORKFLOW} started"
    if "result" in entry:
        text += f": {entry['result']}"
    print(f"Audit entity '{account}' recorded: {text}")
    return entry


# -- Arguments, keys, reachability, the repeat loop for Azure ----------------------------------

class Unreachable(Exception):
    pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="The durable entities demo: Part 1 a counter, Part 2 transfers that lock two accounts, Part 3 "
                    "an entity signaling an entity, Part 4 an entity starting an orchestration.",
        epilog="The scheduler comes from the environment: ENDPOINT (default http://localhost:8080) and TASKHUB "
               f"(default default), or {settings.CONNECTION_STRING_VARIABLE}. Exit status: 0 every part showed its "
               "effect, 1 one did not, 2 no scheduler answers or bad input.")
    p.add_argument("entity_key", nargs="?", default="my-counter", help="counter key (default: my-counter)")
    p.add_argument("--orchestrations", type=int, default=5, help="orchestrations to run (default: 5)")
    # String defaults go through `type` too, so a bad environment value is a clear usage error.
    p.add_argument("--interval", type=float, default=os.environ.get("ORCHESTRATION_INTERVAL") or "0",
                   help="seconds between schedules (default: env ORCHESTRATION_INTERVAL, else 0)")
    p.add_argument("--accounts", default="account-", metavar="PREFIX",
                   help="the two accounts are PREFIX + A and PREFIX + B (default: account-)")
    p.add_argument("--counter-only", action="store_true", help="run Part 1 (the counter) only")
    p.add_argument("--repeat", type=float, default=os.environ.get("DEMO_REPEAT_SECONDS") or "0",
                   help="run the demo again every SECONDS until stopped (default: env DEMO_REPEAT_SECONDS, "
                        "else run once)")
    args = p.parse_args(argv)
    if args.orchestrations < 0 or args.interval < 0 or args.repeat < 0:
        p.error("--orchestrations, --interval and --repeat must not be negative")
    return args


def check_key(key: str, orchestrations: int) -> str | None:
    """Why this key cannot name a counter (with every -orch-N suffix), or None."""
    if not key:
        return "the entity key must not be empty"
    if "@" in key:
        return f"the entity key '{key}' must not contain '@'"
    return check_length(COUNTER, f"{key}-orch-{max(orchestrations, 1)}", "entity key")


def check_accounts(prefix: str) -> str | None:
    """Why this prefix cannot name the accounts (and their audit entities), or None."""
    if "@" in prefix:
        return f"the accounts prefix '{prefix}' must not contain '@'"
    return check_length(ACCOUNT, f"{prefix}B", "accounts prefix")


def check_length(name: str, key: str, what: str) -> str | None:
    longest = f"@{name}@{key}"
    if len(longest) > MAX_ENTITY_ID:
        return (f"the {what} is too long: entity IDs such as '{longest[:30]}...' would be "
                f"{len(longest)} characters; the limit is {MAX_ENTITY_ID}")
    return None


def check_reachable(config: settings.Settings, timeout: float = 5.0) -> None:
    """Fail fast, with advice, when nothing listens at the endpoint."""
    if not config.answers(timeout):
        raise Unreachable(
            f"no scheduler answers at {config.endpoint}. Start one with 'python -m emulator' (or 'make emulator'), "
            "or the DTS emulator in Docker, or set ENDPOINT/TASKHUB (or "
            f"{settings.CONNECTION_STRING_VARIABLE}) for Durable Task Scheduler in Azure."
        )


Demo = Callable[[Any, str, int, float, "str | None"], int]  # client.run_demo


def main(demo: Demo, argv: list[str] | None = None, client=None) -> int:
    """Run ``demo`` once, or every --repeat seconds; tests pass their own ``client`` instead of patching."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    problem = check_key(args.entity_key, args.orchestrations) or check_accounts(args.accounts)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if client is None:
        try:
            config = settings.load()
            check_reachable(config)
        except (settings.SettingsError, Unreachable) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        client = DurableTaskSchedulerClient(
            host_address=config.endpoint, taskhub=config.taskhub,
            token_credential=config.credential(), secure_channel=config.secure_channel,
            logger=logging.getLogger("durabletask-client"),
        )
    if not args.repeat:
        return run_once(demo, client, args)
    life = settings.Lifecycle("client")  # SIGTERM or Ctrl-C: this round ends within settings.STOP_SECONDS
    life.on_signals()
    life.serve_health()
    life.ready()
    stop = life.stopping
    rounds = 0
    while not stop.is_set():
        rounds += 1
        print(f"=== Round {rounds} ===", flush=True)
        code = run_once(demo, client, args)
        log.log(logging.INFO if code == 0 else logging.WARNING,
                "round %d finished with status %d; next in %.0fs", rounds, code, args.repeat)
        stop.wait(args.repeat)
    return 0


def run_once(demo: Demo, client, args: argparse.Namespace) -> int:
    try:
        return demo(client, args.entity_key, args.orchestrations, args.interval,
                        None if args.counter_only else args.accounts)
    except grpc.RpcError as exc:
        print(f"error: the scheduler refused a request: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 2 if exc.code() == grpc.StatusCode.UNAVAILABLE else 1

