"""The worker every benchmark backend is driven with: the sample's functions plus one probe.

Usage: python bench/bench_worker.py ADDRESS
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from durabletask import entities, task  # noqa: E402
from durabletask.worker import ConcurrencyOptions, TaskHubGrpcWorker  # noqa: E402

from worker import counter, counter_workflow  # noqa: E402


def single_call(ctx: task.OrchestrationContext, key: str):
    """One request/response round trip to an entity: what the latency workload times."""
    return (yield ctx.call_entity(entities.EntityInstanceId("counter", key), "get"))


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    worker = TaskHubGrpcWorker(
        host_address=sys.argv[1],
        concurrency_options=ConcurrencyOptions(maximum_concurrent_orchestration_work_items=100,
                                               maximum_concurrent_entity_work_items=100),
        logger=logging.getLogger("bench-worker"),
    )
    worker.add_entity(counter)
    worker.add_orchestrator(counter_workflow)
    worker.add_orchestrator(single_call)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    worker.start()
    print("bench worker ready", flush=True)
    stop.wait()
    worker.stop()


if __name__ == "__main__":
    main()
