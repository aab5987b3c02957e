"""durabletask.testing's in-memory backend in a process of its own, on a loopback port.

Usage: python bench/in_memory_server.py PORT   (prints "listening on PORT" when ready)
"""

from __future__ import annotations

import signal
import sys
import threading
from concurrent import futures

import grpc
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc
from durabletask.testing.in_memory_backend import InMemoryOrchestrationBackend


def main() -> None:
    backend = InMemoryOrchestrationBackend(max_history_size=100_000)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    pb_grpc.add_TaskHubSidecarServiceServicer_to_server(backend, server)
    port = server.add_insecure_port(f"127.0.0.1:{sys.argv[1]}")
    server.start()
    print(f"listening on {port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(None)


if __name__ == "__main__":
    main()
