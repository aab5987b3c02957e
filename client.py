"""The client: signal the counter directly, then run orchestrations that use it.

    python client.py [entity-key] [--orchestrations N] [--interval SECONDS] [--repeat SECONDS]

Exit status: 0 when every orchestration completed, 1 when any failed or timed
out, 2 when no scheduler answers or the input is invalid. With --repeat (as in
Azure, where a container that exits is restarted) it runs the demo again every
SECONDS until SIGTERM or Ctrl-C, then exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time

import grpc
from durabletask import client as dt_client
from durabletask.azuremanaged.client import DurableTaskSchedulerClient
from durabletask.entities import EntityInstanceId

import settings
from worker import counter_workflow

log = logging.getLogger("client")

ENTITY_NAME = "counter"
MAX_ENTITY_ID = 100
TIMEOUT_SECONDS = 60.0


class Unreachable(Exception):
    pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Durable entities demo client.")
    p.add_argument("entity_key", nargs="?", default="my-counter", help="counter key (default: my-counter)")
    p.add_argument("--orchestrations", type=int, default=5, help="orchestrations to run (default: 5)")
    # String defaults go through `type` too, so a bad environment value is a clear usage error.
    p.add_argument("--interval", type=float, default=os.environ.get("ORCHESTRATION_INTERVAL") or "0",
                   help="seconds between schedules (default: env ORCHESTRATION_INTERVAL, else 0)")
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
    longest = f"@{ENTITY_NAME}@{key}-orch-{max(orchestrations, 1)}"
    if len(longest) > MAX_ENTITY_ID:
        return (f"the entity key is too long: entity IDs such as '{longest[:30]}...' would be "
                f"{len(longest)} characters; the limit is {MAX_ENTITY_ID}")
    return None


def wait_for_state(client, entity_id: EntityInstanceId, expected: int, timeout: float) -> int | None:
    """Read the entity until it holds ``expected``; its last value on timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        metadata = client.get_entity(entity_id)
        value = metadata.get_typed_state(int) if metadata else None
        if value == expected or time.monotonic() >= deadline:
            return value
        time.sleep(delay)  # the scheduler offers no wait-for-entity call
        delay = min(delay * 2, 0.5)


def run_demo(client, key: str, orchestrations: int, interval: float) -> int:
    print(f"Starting entity operations demo - {orchestrations} orchestrations")
    print("=== Direct Entity Operations ===")
    entity_id = EntityInstanceId(ENTITY_NAME, key)
    before_meta = client.get_entity(entity_id)
    before = (before_meta.get_typed_state(int) if before_meta else None) or 0
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
        scheduled.append(client.schedule_new_orchestration(counter_workflow, input=counter_key))

    succeeded = 0
    for instance_id in scheduled:
        try:
            state = client.wait_for_orchestration_completion(instance_id, timeout=TIMEOUT_SECONDS)
        except TimeoutError:
            print(f"Orchestration {instance_id} did not complete within {TIMEOUT_SECONDS:.0f}s")
            continue
        if state is not None and state.runtime_status == dt_client.OrchestrationStatus.COMPLETED:
            print(f"Orchestration completed successfully with result: {state.serialized_output}")
            succeeded += 1
        else:
            status = state.runtime_status.name if state else "MISSING"
            details = state.failure_details.message if state and state.failure_details else "no details"
            print(f"Orchestration {instance_id} ended as {status}: {details}")

    value = wait_for_state(client, entity_id, before + 75, TIMEOUT_SECONDS)
    print(f"Entity '{key}' value: {value}")
    signals_applied = value == before + 75
    if not signals_applied:
        print(f"Expected {before + 75} once both signals were applied; the counter holds {value}")
    print(f"Summary: {succeeded} of {orchestrations} orchestrations completed successfully")
    return 0 if succeeded == orchestrations and signals_applied else 1


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
    problem = check_key(args.entity_key, args.orchestrations)
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
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
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
        return run_demo(client, args.entity_key, args.orchestrations, args.interval)
    except grpc.RpcError as exc:
        print(f"error: the scheduler refused a request: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 2 if exc.code() == grpc.StatusCode.UNAVAILABLE else 1


if __name__ == "__main__":
    raise SystemExit(main())
