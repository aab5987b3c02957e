"""Shared test helpers: real emulator processes on free loopback ports, raw worker streams, and waiting for facts."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import grpc
from durabletask.internal import orchestrator_service_pb2 as pb
from google.protobuf import wrappers_pb2

# The emulator served from this process on a free port (the package's own test API), for tests where the
# process itself is not the point; ``backend``, ``call`` and ``on_loop`` reach the engine for assertions.
from dts_emulator.testing import Emulator as InProcessEmulator  # noqa: F401 (re-exported for the tests)

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def doc_page(name: str) -> str:
    """One page of the docs: ``README`` or a page under docs/ by its stem (``emulator``, ``testing``...)."""
    return (ROOT / "README.md" if name == "README" else DOCS / f"{name}.md").read_text()


def all_docs() -> str:
    """The README and every page under docs/: where a setting or a command counts as documented."""
    return "\n".join([doc_page("README"), *(p.read_text() for p in sorted(DOCS.glob("*.md")))])
T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = 15.0, message: str = "condition") -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message} (last value: {value!r})")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


class Process:
    """A child process whose output is collected by a thread, so pipes never fill."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT):
        self.args = args
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            args, cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float = 20.0) -> re.Match:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if m := regex.search(line):
                        return m
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no line matching {pattern!r} from {self.args}; output:\n{self.output}")
                self._changed.wait(min(remaining, 0.5))

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 20.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, then SIGKILL if it lingers past ``timeout``; always leaves no process behind."""
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.wait()


class Emulator:
    """``python -m dts_emulator`` on a free port (or a given one), with its data file."""

    def __init__(self, data: Path | None, port: int = 0, hubs: str | None = None, extra: tuple[str, ...] = (),
                 dashboard_port: int = 0):
        self.data, self.hubs, self.extra = data, hubs, extra
        self.port, self.dashboard_port = port, dashboard_port
        self.process: Process | None = None

    def start(self) -> Emulator:
        args = [sys.executable, "-m", "dts_emulator", "--port", str(self.port), "--log-level", "info",
                "--dashboard-port", str(self.dashboard_port), *self.extra]
        args += ["--data", str(self.data)] if self.data else ["--in-memory"]
        if self.hubs:
            args += ["--task-hubs", self.hubs]
        self.process = Process(args)
        self.port = int(self.process.wait_for_line(r"gRPC endpoint: http://[\d.]+:(\d+)").group(1))
        return self

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM; the exit status (-9 if it had to be killed after ``timeout`` seconds)."""
        return self.process.stop(timeout) if self.process else None

    def kill(self) -> None:
        self.process.signal(signal.SIGKILL)
        self.process.wait()

    def restart(self) -> Emulator:
        """Start again on the same port and the same data file."""
        return self.start()


def serve_in_memory_backend():
    """durabletask.testing's in-memory backend, served on a free loopback port.

    Returns (server, address); ``server.stop(None)`` ends it.
    """
    from concurrent import futures

    import grpc
    from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc
    from durabletask.testing.in_memory_backend import InMemoryOrchestrationBackend

    backend = InMemoryOrchestrationBackend()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    pb_grpc.add_TaskHubSidecarServiceServicer_to_server(backend, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


class RawWorker:
    """A worker's GetWorkItems stream over the raw stub, read on a thread: a test sees exactly what is sent.

    ``items`` keeps every work item in arrival order (health pings left out); ``next()`` hands
    them out one by one and raises ``queue.Empty`` after ``timeout`` seconds without one.
    """

    def __init__(self, stub, request: pb.GetWorkItemsRequest | None = None):
        self.stream = stub.GetWorkItems(request or pb.GetWorkItemsRequest())
        self.items: list[pb.WorkItem] = []
        self._unread: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for item in self.stream:
                if not item.HasField("healthPing"):
                    self.items.append(item)
                    self._unread.put(item)
        except grpc.RpcError:
            pass  # cancelled by close()

    def next(self, timeout: float = 10.0) -> pb.WorkItem:
        return self._unread.get(timeout=timeout)

    def close(self) -> None:
        self.stream.cancel()
        self._thread.join(5)


def start_slow_worker(address: str, streams_connected: Callable[[], int]) -> Process:
    """tests/slow_worker.py against ``address``, once the emulator has its stream.

    ``streams_connected`` counts the worker streams the emulator has seen (it must grow by one):
    the worker's own "started" comes before the SDK has connected.
    """
    before = streams_connected()
    worker = Process([sys.executable, "tests/slow_worker.py", address])
    try:
        worker.wait_for_line(r"slow worker \d+ started")
        wait_until(lambda: streams_connected() > before, timeout=30, message="the slow worker's stream to connect")
    except BaseException:
        worker.stop()
        raise
    return worker


def streams_in_log(emulator: Emulator) -> Callable[[], int]:
    """How many worker streams an emulator process has logged as connected."""
    return lambda: len(re.findall(r"worker stream \d+ connected", emulator.process.output))


def text(value: str) -> wrappers_pb2.StringValue:
    """A protobuf string field's value, as raw requests carry IDs, names and payloads."""
    return wrappers_pb2.StringValue(value=value)


def status_of(stub, instance_id: str) -> pb.OrchestrationState:
    """An instance's state from the raw GetInstance call; it must exist."""
    response = stub.GetInstance(pb.GetInstanceRequest(instanceId=instance_id))
    assert response.exists
    return response.orchestrationState


def entity_value(client, eid) -> int | None:
    """An entity's state as an int, or None when it has none."""
    meta = client.get_entity(eid)
    return meta.get_typed_state(int) if meta else None


def entity_backlog(client, eid) -> int:
    """How many operations wait in an entity's inbox (-1: no such entity), from the raw GetEntity call."""
    from durabletask.internal import orchestrator_service_pb2 as pb

    response = client._stub.GetEntity(pb.GetEntityRequest(instanceId=str(eid)))
    return response.entity.backlogQueueSize if response.exists else -1


def free_port() -> int:
    """A port that was free a moment ago, for servers that cannot pick their own."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def awaits_approval(ctx, _):
    """An orchestration that waits for an 'approve' event and returns its data."""
    return (yield ctx.wait_for_external_event("approve"))


def locks_calls_and_waits(ctx, names: dict):
    """Locks a counter, calls it, then waits for an event, under the names it is given (for the drawings)."""
    from durabletask import entities

    counter = entities.EntityInstanceId("counter", names["key"])
    with (yield ctx.lock_entities([counter])):
        yield ctx.call_entity(counter, "add", 1)
    return (yield ctx.wait_for_external_event(names["event"]))


class DemoSite:
    """An emulator with its dashboard, a worker, and the demo's data in it (for dashboard tests).

    What it starts is stopped if the demo fails (or anything else in between), so a failed
    demo leaves no emulator or worker thread behind to keep pytest from exiting.
    """

    def __init__(self, data: Path, demo_args: tuple[str, ...] = ("my-counter",)):
        from durabletask import client as dt_client
        from durabletask.worker import TaskHubGrpcWorker

        import client as sample_client
        import worker as sample_worker

        self._started = contextlib.ExitStack()
        try:
            self.emulator = InProcessEmulator(data, dashboard_port=free_port()).start()
            self._started.callback(self.emulator.stop)
            self.worker = TaskHubGrpcWorker(host_address=self.emulator.address)
            sample_worker.register(self.worker)
            self.worker.add_orchestrator(awaits_approval)
            self.worker.add_orchestrator(locks_calls_and_waits)
            self.worker.start()
            self._started.callback(self.worker.stop)
            self.client = dt_client.TaskHubGrpcClient(host_address=self.emulator.address)
            self._started.callback(self.client.close)
            status = sample_client.main(list(demo_args), client=self.client)
            assert status == 0, f"the demo ({' '.join(demo_args)}) ended with status {status}"
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the client, the worker and the emulator (in that order), each even if another fails."""
        self._started.close()


def instance_url(instance_id: str, action: str = "", hub: str = "default", api: bool = True) -> str:
    """The dashboard's one form of an instance's URL (the API's, or the page's with ``api=False``)."""
    prefix = "/api" if api else ""
    return f"{prefix}/hubs/{hub}/instance{action and '/' + action}?id={urllib.parse.quote(instance_id, safe='')}"


def entity_url(entity_id: str, action: str = "", hub: str = "default", api: bool = True) -> str:
    """The dashboard's one form of an entity's URL (the API's, or the page's with ``api=False``)."""
    prefix = "/api" if api else ""
    return f"{prefix}/hubs/{hub}/entity{action and '/' + action}?id={urllib.parse.quote(entity_id, safe='')}"
