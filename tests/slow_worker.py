"""A worker process for crash tests: the sample's functions plus a deliberately slow counter.

Usage: python tests/slow_worker.py ADDRESS   (logs one line per slow operation, with its pid)

It says "started" once its worker runs; the SDK connects its stream after that, on a thread of its
own, so a test that needs the stream waits for the emulator to see it (``helpers.start_slow_worker``).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from durabletask import entities  # noqa: E402
from durabletask.worker import TaskHubGrpcWorker  # noqa: E402

from worker import counter, counter_workflow  # noqa: E402

log = logging.getLogger("slow_worker")


def slow_counter(ctx: entities.EntityContext, amount: int) -> int:
    time.sleep(0.01)  # simulated work, so that a kill lands while a batch is held
    value = ctx.get_state(int, 0) + amount
    ctx.set_state(value)
    log.info("pid %d applied %s to %s", os.getpid(), amount, ctx.entity_id.key)
    return value


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    worker = TaskHubGrpcWorker(host_address=sys.argv[1])
    worker.add_entity(slow_counter)
    worker.add_entity(counter)
    worker.add_orchestrator(counter_workflow)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    worker.start()
    log.info("slow worker %d started", os.getpid())
    stop.wait()
    worker.stop()


if __name__ == "__main__":
    main()
