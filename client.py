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
Ctrl-C, then exits 0. Reading entities until a signal lands, awaiting orchestrations, the
checks and the repeat loop are in client_support.py.
"""

from __future__ import annotations

import sys
import time

from durabletask.entities import EntityInstanceId

from client_support import (
    ACCOUNT,
    AUDIT_THRESHOLD,
    AUDIT_WORKFLOW,
    COUNTER,
    COUNTER_WORKFLOW,
    SAME_KEYS_HINT,
    TRANSFER_FUNDS,
    audit_count,
    await_orchestration,
    balances,
    describe,
    read_state,
    show_audit_entry,
    show_balances,
    transfer,
    wait_for,
)
from client_support import main as run

CONCURRENT_TRANSFERS = 10  # in each direction, all scheduled before any is awaited


def part1_counter(client, key: str, orchestrations: int, interval: float) -> bool:
    print("=== Part 1: Signaling and Calling an Entity ===")  # then the lines of Microsoft's sample, as they are
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
        print(f"error: {SAME_KEYS_HINT}", file=sys.stderr)
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


def main(argv: list[str] | None = None, client=None) -> int:
    """Run the demo (``client``: a test's own, instead of one built from the settings)."""
    return run(run_demo, argv, client)


if __name__ == "__main__":
    raise SystemExit(main())
