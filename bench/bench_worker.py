"""The worker every benchmark backend is driven with: the sample's functions plus two probes.

Usage: python bench/bench_worker.py ADDRESS [--freeze-on orchestration|entity]

With ``--freeze-on KIND`` the worker stops itself (SIGSTOP) the moment it receives its first
work item of that kind, before running it: so when it is frozen it provably holds that item,
leased and not completed. It says so on stdout first ("freezing while holding ..."), and once
thawed (SIGCONT) it reports what the backend answered to each completion it then sends
("late completion ...: accepted" or "refused (CODE)").
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc  # noqa: E402
from durabletask import entities, task  # noqa: E402
from durabletask.worker import ConcurrencyOptions, TaskHubGrpcWorker  # noqa: E402

from worker import counter, counter_workflow  # noqa: E402

log = logging.getLogger("bench-worker")


def single_call(ctx: task.OrchestrationContext, key: str):
    """One request/response round trip to an entity: what the latency workload times."""
    return (yield ctx.call_entity(entities.EntityInstanceId("counter", key), "get"))


def awaits_release(ctx: task.OrchestrationContext, _):
    """Runs until a 'release' event arrives: an instance that clients can wait on for as long as needed."""
    return (yield ctx.wait_for_external_event("release"))


class _ReportingStub:
    """The worker's stub, reporting what the backend answers to each completion sent late.

    ``late()`` is asked as a completion is sent, not when its answer arrives: a completion
    sent just before the freeze is answered after the thaw, and was not late.
    """

    def __init__(self, stub: Any, late: Callable[[], bool], report: Callable[[str], None]):
        self._stub, self._late, self._report = stub, late, report

    def __getattr__(self, name: str):
        method = getattr(self._stub, name)
        if not name.startswith("Complete"):
            return method

        def complete(request, *args, **kwargs):
            if not self._late():
                return method(request, *args, **kwargs)
            try:
                answer = method(request, *args, **kwargs)
            except grpc.RpcError as exc:
                self._report(f"refused ({exc.code().name})")
                raise
            self._report("accepted")
            return answer

        return complete


class FreezingWorker(TaskHubGrpcWorker):
    """A worker that can stop itself while it holds a work item, and reports its late completions.

    Hooks the SDK's per-item execute methods (durabletask 1.12): the only place where a received
    work item is known and its completion not yet sent.
    """

    def __init__(self, *args, freeze_on: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._freeze_on = freeze_on
        self._froze = False  # it freezes once
        self._thawed = False  # set once it runs again: completions from then on are late
        self._held = 0
        self._lock = threading.Lock()

    def _execute_orchestrator(self, req, stub, completionToken):
        return self._run("orchestration", req.instanceId, super()._execute_orchestrator, req, stub, completionToken)

    def _execute_entity_batch(self, req, stub, completionToken):
        return self._run("entity", req.instanceId, super()._execute_entity_batch, req, stub, completionToken)

    def _run(self, kind: str, target: str, execute, req, stub, token):
        with self._lock:
            self._held += 1
            freeze = kind == self._freeze_on and not self._froze
            self._froze |= freeze
            held = self._held
            # Received before the thaw: if its completion is sent after it, that completion is late.
            # An item received after the thaw (on the stream the worker opens again) is not.
            held_over = not self._thawed
        if freeze:
            print(f"freezing while holding {held} work item(s), among them {kind} {target}", flush=True)
            # Sent to this thread, the stop takes hold before it runs another line; sent to the
            # process (os.kill), another thread may take it while this one runs the item first.
            signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)
            self._thawed = True  # not before: another thread may complete its item while this one stops
        if held_over:
            stub = _ReportingStub(stub, lambda: self._thawed,
                                  lambda outcome: print(f"late completion of {kind} {target}: {outcome}", flush=True))
        try:
            return execute(req, stub, token)
        finally:
            with self._lock:
                self._held -= 1


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("address")
    p.add_argument("--freeze-on", choices=["orchestration", "entity"],
                   help="stop this process on receiving its first work item of this kind")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    options = {"freeze_on": args.freeze_on} if args.freeze_on else {}
    worker = (FreezingWorker if args.freeze_on else TaskHubGrpcWorker)(
        host_address=args.address,
        concurrency_options=ConcurrencyOptions(maximum_concurrent_orchestration_work_items=100,
                                               maximum_concurrent_entity_work_items=100),
        logger=log,
        **options,
    )
    worker.add_entity(counter)
    worker.add_orchestrator(counter_workflow)
    worker.add_orchestrator(single_call)
    worker.add_orchestrator(awaits_release)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    worker.start()
    print("bench worker ready", flush=True)
    stop.wait()
    worker.stop()


if __name__ == "__main__":
    main()
