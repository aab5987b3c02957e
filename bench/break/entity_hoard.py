"""Two SDK workers and a backlog of entity batches: the SDK sends no maxConcurrentEntityWorkItems, so the
first worker to connect is sent every ready batch and the second sits idle.

usage: entity_hoard.py [ENTITIES] [SECONDS_PER_OP]
"""
import sys
import threading
import time

from durabletask import client as dt_client
from durabletask import entities
from durabletask import worker as dt_worker

sys.path.insert(0, ".")
from tests.helpers import InProcessEmulator, wait_until  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200
PAUSE = float(sys.argv[2]) if len(sys.argv) > 2 else 0.05
done = {"A": 0, "B": 0}
lock = threading.Lock()


def slow_entity(who: str):
    def slow(ctx: entities.EntityContext, _=None):
        time.sleep(PAUSE)
        with lock:
            done[who] += 1
        ctx.set_state(1)
    return slow


def main():
    emu = InProcessEmulator().start()
    client = dt_client.TaskHubGrpcClient(host_address=emu.address)
    workers = []
    try:
        for i in range(N):
            client.signal_entity(entities.EntityInstanceId("slow", f"k{i}"), "go")
        t0 = time.monotonic()
        for who in ("A", "B"):
            w = dt_worker.TaskHubGrpcWorker(host_address=emu.address)
            w.add_entity(slow_entity(who))
            w.start()
            workers.append(w)
            if who == "A":
                wait_until(lambda: done["A"] > 0, message="worker A busy")
                held_a = emu.on_loop(emu.backend.dispatch.leases_held)
        wait_until(lambda: done["A"] + done["B"] == N, timeout=600, message="all batches")
        took = time.monotonic() - t0
        print(f"{N} entity batches of {PAUSE} s: worker A held {held_a} leases when B connected; "
              f"A ran {done['A']}, B ran {done['B']}; {took:.1f} s", flush=True)
    finally:
        for w in workers:
            w.stop()
        client.close()
        emu.stop()


main()
