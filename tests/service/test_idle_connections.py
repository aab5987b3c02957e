"""A thousand idle or slow connections leave the emulator serving: Hello, a new worker, the dashboard.

Started under the usual soft limit of 1,024 open files (with a higher hard limit), 1,100
connections that never send anything, or send half a request, used to exhaust it: accept
failed in a loop, logging "Too many open files" thousands of times a second.
"""

from __future__ import annotations

import resource
import socket
import sys
import urllib.request
import uuid

import grpc
import pytest
from durabletask import client as dt_client
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc
from google.protobuf import empty_pb2

from tests.helpers import Process, free_port, wait_until

IDLE = 1_100
SOFT_LIMIT = 1_024


def greet(ctx, name: str):
    return f"hello {name}"


@pytest.fixture
def limited_emulator(tmp_path):
    """An emulator started with a soft limit of 1,024 files, as most shells give; (process, grpc port, dashboard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 3 * IDLE:
        pytest.skip(f"the hard open-file limit ({hard}) leaves no room for {IDLE} connections on each side")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this test's own side of the connections
    dashboard_port = free_port()
    args = [sys.executable, "-c",
            "import resource, runpy, sys; h = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; "
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({SOFT_LIMIT}, h)); "
            "sys.argv[0] = 'emulator'; runpy.run_module('emulator', run_name='__main__')",
            "--port", "0", "--dashboard-port", str(dashboard_port), "--log-level", "info",
            "--data", str(tmp_path / "idle.db")]
    process = Process(args)
    try:
        port = int(process.wait_for_line(r"gRPC endpoint: http://[\d.]+:(\d+)").group(1))
        yield process, port, dashboard_port
    finally:
        process.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_idle_and_slow_connections_leave_hello_a_new_worker_and_the_dashboard_working(limited_emulator,
                                                                                       start_worker):
    process, port, dashboard_port = limited_emulator
    opened: list[socket.socket] = []
    try:
        for i in range(IDLE):  # idle on gRPC, half a request on the dashboard
            s = socket.create_connection(("127.0.0.1", port if i % 2 else dashboard_port), timeout=10)
            if not i % 2:
                s.sendall(b"GET /api/hubs HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
            opened.append(s)
        assert len(opened) > SOFT_LIMIT  # the scenario: more connections than the emulator's soft limit
        lines_before = len(process.lines)

        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            pb_grpc.TaskHubSidecarServiceStub(channel).Hello(empty_pb2.Empty(), timeout=10)

        start_worker(f"127.0.0.1:{port}", orchestrators=[greet])
        client = dt_client.TaskHubGrpcClient(host_address=f"127.0.0.1:{port}")
        try:
            instance_id = client.schedule_new_orchestration(greet, input="idle", instance_id=uuid.uuid4().hex)
            state = client.wait_for_orchestration_completion(instance_id, timeout=30)
            assert state is not None and state.serialized_output == '"hello idle"'
        finally:
            client.close()

        with urllib.request.urlopen(f"http://127.0.0.1:{dashboard_port}/api/hubs", timeout=10) as response:
            assert response.status == 200

        assert len(process.lines) - lines_before < 50, "\n".join(process.lines[-20:])
    finally:
        for s in opened:
            s.close()
    assert wait_until(lambda: process.proc.poll() is None, message="the emulator still running")


@pytest.mark.slow
def test_the_dashboard_closes_a_connection_that_never_finishes_its_request_head(limited_emulator):
    from dts_emulator.dashboard.server import HEADER_SECONDS

    _, _, dashboard_port = limited_emulator
    with socket.create_connection(("127.0.0.1", dashboard_port), timeout=HEADER_SECONDS + 20) as s:
        s.sendall(b"GET /api/hubs HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the blank line never comes
        assert s.recv(1024) == b""  # closed by the emulator; a timeout here fails the test
