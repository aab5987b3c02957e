"""The client: the entities demo in four parts, each showing its effect.

    python client.py [entity-key] [--orchestrations N] [--interval SECONDS] [--accounts PREFIX] [--counter-only]
                     [--repeat SECONDS]

Part 1 signals a counter and runs orchestrations that use it. Part 2 funds two accounts and
moves money with ``transfer_funds``, which locks both. Part 3 reads the audit entry that a
large deposit made the account signal; Part 4 finds and awaits the ``audit_workflow`` that a
large withdrawal made the account start. Then many transfers at once, with the total unchanged,
and a transfer that would overdraw, refused.

The client knows the worker by names only (entities, operations, orchestrations), as a client
in another process, container or language does; tests/sample/test_sample.py holds both to them.

Exit status: 0 when every part showed its effect, 1 when one did not (the demo stops there),
2 when no scheduler answers or the input is invalid. With --repeat (as in Azure, where a
container that exits is restarted) it runs the demo again every SECONDS until SIGTERM or
Ctrl-C, then exits 0.
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
CONCURRENT_TRANSFERS = 10  # in each direction, all scheduled before any is awaited
MAX_ENTITY_ID = 100
TIMEOUT_SECONDS = 60.0


def part1_counter(client, key: str, orchestrations: int, interval: float) -> bool:
    print(f"Starting entity operations demo - {orchestrations} orchestrations")
    print("=== Direct Entity Operations ===")
    entity_id = EntityInstanceId(COUNTER, key)
    before = read_state(client, entity_id) or 0
    print(f"Signaling entity '{key}' to add 100")
    client.signal_entity(entity_id, "add", 100)
    print(f"Signaling entity '{key}' to subtract 25")
    client.signal_entity(entity_id, "subtract", 25)

    print("=== Orchestration-based Entity Operations ===")
    scheduled = []
    for n in range(1, orchestrations + 1):
        if n > 1 and interval:
            time.sleep(interval)  # pacing the user asked for
        counter_key = f"{key}-orch-{n}"
        print(f"Scheduling orchestration #{n} for entity '{counter_key}'")
        scheduled.append(client.schedule_new_orchestration(COUNTER_WORKFLOW, input=counter_key))

    succeeded = 0
    for instance_id in scheduled:
        state, problem = await_orchestration(client, instance_id)
        if problem:
            print(problem)
            continue
        print(f"Orchestration completed successfully with result: {state.serialized_output}")
        succeeded += 1

    value = wait_for(lambda: read_state(client, entity_id), lambda v: v == before + 75)
    print(f"Entity '{key}' value: {value}")
    signals_applied = value == before + 75
    if not signals_applied:
        print(f"Expected {before + 75} once both signals were applied; the counter holds {value}")
    print(f"Summary: {succeeded} of {orchestrations} orchestrations completed successfully")
    return succeeded == orchestrations and signals_applied


def part2_locking(client, prefix: str) -> bool:
    print("=== Part 2: Locking Entities ===")
    a, b = f"{prefix}A", f"{prefix}B"
    before = balances(client, prefix)
    print(f"Depositing 1000 into '{a}' and 200 into '{b}'")
    client.signal_entity(EntityInstanceId(ACCOUNT, a), "deposit", 1000)
    client.signal_entity(EntityInstanceId(ACCOUNT, b), "deposit", 200)
    funded = {a: before.get(a, 0) + 1000, b: before.get(b, 0) + 200}
    if not show_balances(client, prefix, expected=funded):
        return False
    print(f"Transferring 300 from '{a}' to '{b}' with {TRANSFER_FUNDS}, which locks both accounts")
    result = transfer(client, a, b, 300)
    if result is None:
        return False
    print(describe(result, a, b))
    return show_balances(client, prefix, expected={a: funded[a] - 300, b: funded[b] + 300})


def part3_entity_signals_entity(client, prefix: str) -> bool:
    print("=== Part 3: Entities Signaling Entities ===")
    a = f"{prefix}A"
    seen = audit_count(client, a)
    print(f"Depositing 600 into '{a}'; {AUDIT_THRESHOLD} or more, so the account signals its audit entity")
    client.signal_entity(EntityInstanceId(ACCOUNT, a), "deposit", 600)
    return show_audit_entry(client, a, seen, event="large deposit", amount=600) is not None


def part4_entity_starts_orchestration(client, prefix: str) -> bool:
    print("=== Part 4: Entities Starting Orchestrations ===")
    a = f"{prefix}A"
    seen = audit_count(client, a)
    print(f"Withdrawing 500 from '{a}'; {AUDIT_THRESHOLD} or more, so the account starts {AUDIT_WORKFLOW}")
    client.signal_entity(EntityInstanceId(ACCOUNT, a), "withdraw", 500)
    # The account notes the ID of the orchestration it started in its audit trail: that is how we find it.
    entry = show_audit_entry(client, a, seen, event="large withdrawal", amount=500)
    if entry is None:
        return False
    state, problem = await_orchestration(client, entry["workflow"])
    if problem:
        print(problem)
        return False
    print(f"Awaited {state.name}: completed with result: {state.serialized_output}")
    return show_audit_entry(client, a, entry["seq"], event="audit completed") is not None


def concurrent_transfers(client, prefix: str) -> bool:
    print("=== Concurrent Transfers ===")
    a, b = f"{prefix}A", f"{prefix}B"
    before = balances(client, prefix)
    pair_total = before[a] + before[b]
    n = CONCURRENT_TRANSFERS
    print(f"Scheduling {2 * n} transfers at once: {n} of 50 from '{a}' to '{b}', {n} of 40 back")
    scheduled = [client.schedule_new_orchestration(TRANSFER_FUNDS, input={"from": x, "to": y, "amount": amount})
                 for _ in range(n) for x, y, amount in ((a, b, 50), (b, a, 40))]
    results = []
    for instance_id in scheduled:
        state, problem = await_orchestration(client, instance_id)
        if problem:
            print(problem)
            return False
        results.append(state.get_output())
    # Inside its critical section each transfer saw both balances after its own move: with the
    # locks held, nothing else was half done, so each pair adds up to the same total.
    views = {sum(r["balances"].values()) for r in results if r["transferred"]}
    after = balances(client, prefix)
    moved = sum(1 for r in results if r["transferred"])
    print(f"{moved} of {len(results)} transfers completed; inside its critical section, each saw "
          f"{' or '.join(map(str, sorted(views)))} across the two accounts")
    total_before, total_after = sum(before.values()), sum(after.values())
    print(f"Total across accounts before {total_before}, after {total_after}; "
          f"lowest balance {min(after.values())}")
    show_balances(client, prefix)
    if not (views <= {pair_total} and total_before == total_after and min(after.values()) >= 0):
        print(f"Expected every transfer to see {pair_total}, the total to stay {total_before}, no balance below 0")
        return False
    return True


def overdraft_refused(client, prefix: str) -> bool:
    print("=== Overdraft ===")
    a, b = f"{prefix}A", f"{prefix}B"
    before = balances(client, prefix)
    amount = before[b] + 1
    print(f"Transferring {amount} from '{b}' to '{a}', one more than its balance")
    result = transfer(client, b, a, amount)
    if result is None:
        return False
    print(describe(result, b, a))
    return show_balances(client, prefix, expected=before) and not result["transferred"]


def run_demo(client, key: str, orchestrations: int, interval: float, prefix: str | None) -> int:
    if not part1_counter(client, key, orchestrations, interval):
        return 1
    if prefix is None:  # --counter-only
        return 0
    for part in (part2_locking, part3_entity_signals_entity, part4_entity_starts_orchestration,
                 concurrent_transfers, overdraft_refused):
        if not part(client, prefix):
            return 1
    print("Summary: every part showed its effect")
    return 0


# -- What the parts share: reading entities, awaiting orchestrations, reporting ----------------

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
    """Every account whose key starts with ``prefix``, found by query rather than remembered."""
    query = dt_client.EntityQuery(instance_id_starts_with=f"@{ACCOUNT}@{prefix}")
    return {m.id.key: m.get_typed_state(int) for m in client.get_all_entities(query)}


def show_balances(client, prefix: str, expected: dict[str, int] | None = None) -> bool:
    """Print the balances once they hold ``expected`` (or at once); False if they never do."""
    settled = (lambda found: all(found.get(k) == v for k, v in expected.items())) if expected else bool
    found = wait_for(lambda: balances(client, prefix), settled)
    print("Balances: " + ", ".join(f"'{k}' {v}" for k, v in sorted(found.items())))
    if not settled(found):
        print(f"Expected {expected}")
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


# -- Plumbing: arguments, keys, reachability, the repeat loop for Azure ------------------------

class Unreachable(Exception):
    pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Durable entities demo client.")
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


def main(argv: list[str] | None = None, client=None) -> int:
    """Run the demo; tests pass their own ``client`` instead of patching."""
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
        return run_once(client, args)
    life = settings.Lifecycle("client")  # SIGTERM or Ctrl-C: this round ends within settings.STOP_SECONDS
    life.on_signals()
    life.serve_health()
    life.ready()
    stop = life.stopping
    rounds = 0
    while not stop.is_set():
        rounds += 1
        print(f"=== Round {rounds} ===", flush=True)
        code = run_once(client, args)
        log.log(logging.INFO if code == 0 else logging.WARNING,
                "round %d finished with status %d; next in %.0fs", rounds, code, args.repeat)
        stop.wait(args.repeat)
    return 0


def run_once(client, args: argparse.Namespace) -> int:
    try:
        return run_demo(client, args.entity_key, args.orchestrations, args.interval,
                        None if args.counter_only else args.accounts)
    except grpc.RpcError as exc:
        print(f"error: the scheduler refused a request: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 2 if exc.code() == grpc.StatusCode.UNAVAILABLE else 1


if __name__ == "__main__":
    raise SystemExit(main())
