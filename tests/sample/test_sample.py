"""worker.py and client.py as real processes against a real emulator, as a user runs them.

The emulator is the package's ``dts_emulator`` fixture: served from the test process, emptied before each test.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest
from durabletask import client as dt_client
from durabletask import task
from durabletask.entities import EntityInstanceId

import client as sample_client
from tests.helpers import ROOT, Process, entity_value, free_port, wait_until
from worker import counter


def run_client(endpoint: str, *args: str, timeout: float = 90,
               program: str = "client.py") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, program, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={"PATH": "/usr/bin:/bin", "ENDPOINT": endpoint})


@pytest.fixture
def sample_worker(dts_emulator):
    p = Process([sys.executable, "worker.py"], env={"ENDPOINT": dts_emulator.endpoint})
    p.wait_for_line("worker started")
    yield p
    assert p.stop() == 0, "the worker exits 0 on SIGTERM"


def test_the_client_uses_the_names_the_worker_registers():
    """The client knows the worker by names only (so its image needs no worker.py); these are they."""
    from durabletask.worker import _Registry

    import worker

    registry = _Registry()
    worker.register(registry)
    import client_support as names

    assert {names.COUNTER, names.ACCOUNT, names.AUDIT} <= registry.entities.keys()
    assert {names.COUNTER_WORKFLOW, names.TRANSFER_FUNDS, names.AUDIT_WORKFLOW} <= registry.orchestrators.keys()
    assert names.AUDIT_THRESHOLD == worker.AUDIT_THRESHOLD


@pytest.mark.parametrize("args, fragment", [
    ([""], "must not be empty"), (["a@b"], "the entity key 'a@b' must not contain '@'"),
    (["k" * 95], "the limit is 100"), (["--accounts", "x@"], "the accounts prefix 'x@' must not contain '@'"),
    (["--accounts", "p" * 91], "the limit is 100"),
])
def test_invalid_key_exits_2_without_traceback(args, fragment):
    result = run_client("http://127.0.0.1:1", *args)
    assert result.returncode == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_scheduler_exits_2_with_advice():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_client(f"http://127.0.0.1:{port}")
    assert result.returncode == 2
    assert f"http://127.0.0.1:{port}" in result.stderr and "python -m emulator" in result.stderr
    assert "Traceback" not in result.stderr


def broken_counter_workflow():
    """An orchestration registered under the sample's name that always fails."""

    def counter_workflow(ctx: task.OrchestrationContext, key: str):
        raise RuntimeError(f"cannot count {key}")

    return counter_workflow


def test_failing_orchestration_exits_1_with_details(dts_emulator, start_worker, uid, capsys):
    from durabletask.worker import TaskHubGrpcWorker

    w = TaskHubGrpcWorker(host_address=dts_emulator.address, metadata=[("taskhub", dts_emulator.taskhub)])
    w.add_orchestrator(broken_counter_workflow())
    w.add_entity(counter)
    w.start()
    start_worker.workers.append(w)
    c = dt_client.TaskHubGrpcClient(host_address=dts_emulator.address, metadata=[("taskhub", dts_emulator.taskhub)])
    code = sample_client.main([uid, "--orchestrations", "1"], client=c)
    out = capsys.readouterr().out
    assert code == 1
    assert f"ended as FAILED: cannot count {uid}-orch-1" in out
    assert out.endswith("Summary: 0 of 1 orchestrations completed successfully\n"), "the demo stops at Part 1"


def test_worker_stops_cleanly_on_sigint(dts_emulator):
    p = Process([sys.executable, "worker.py"], env={"ENDPOINT": dts_emulator.endpoint})
    p.wait_for_line("worker started")
    p.signal(signal.SIGINT)
    assert p.wait() == 0
    assert "authentication none" in p.output
    for name in ("counter", "counter_workflow", "account", "audit", "transfer_funds", "audit_workflow",
                 "process_audit"):
        assert f"registered {name}" in p.output


def test_worker_rejects_bad_settings():
    p = Process([sys.executable, "worker.py"], env={"ENDPOINT": "nonsense"})
    assert p.wait() == 2
    assert "not a URL" in p.output


def test_readme_client_command_with_options(dts_emulator, sample_worker):
    """The README's command with every option; its accounts are its own, so it is their first run."""
    page = (ROOT / "docs" / "sample.md").read_text()
    line = next(x for x in page.splitlines() if x.startswith(".venv/bin/python client.py "))
    args = line.split()[2:]
    assert "--accounts" in args
    result = run_client(dts_emulator.endpoint, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["=== Part 1: Signaling and Calling an Entity ===",
                         "Starting entity operations demo - 3 orchestrations"]
    assert "Summary: 3 of 3 orchestrations completed successfully" in lines
    prefix = args[args.index("--accounts") + 1]
    assert lines[-2:] == [f"Balances: '{prefix}A' 700, '{prefix}B' 600", "Summary: every part showed its effect"]


@pytest.mark.parametrize("variable", ["ORCHESTRATION_INTERVAL", "DEMO_REPEAT_SECONDS"])
def test_bad_environment_numbers_are_usage_errors(variable):
    result = subprocess.run([sys.executable, "client.py"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", variable: "soon"})
    assert result.returncode == 2
    assert "invalid float value: 'soon'" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("program", ["worker.py", "client.py"])
def test_help_describes_the_program_and_starts_nothing(program):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        result = run_client(f"http://127.0.0.1:{listener.getsockname()[1]}", "--help", program=program)
        assert result.returncode == 0 and result.stdout.startswith(f"usage: {program} [-h]"), result.stderr
        assert "ENDPOINT" in result.stdout and "worker started" not in result.stdout + result.stderr
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected


def test_a_worker_with_no_scheduler_says_so_in_one_line_per_retry():
    endpoint = f"http://127.0.0.1:{free_port()}"
    p = Process([sys.executable, "worker.py"], env={"ENDPOINT": endpoint})
    try:
        p.wait_for_line(rf"WARNING durabletask-worker: no scheduler answers at {endpoint}; retrying in .* "
                        r"\(attempt 2\)")
    finally:
        assert p.stop() == 0
    assert "StatusCode" not in p.output and "debug_error_string" not in p.output


def test_the_demo_counts_only_its_own_accounts(dts_emulator, sample_worker, uid):
    """An account made while exploring, with the demo's prefix, is not one of the demo's two."""
    c = dt_client.TaskHubGrpcClient(host_address=dts_emulator.address)
    try:
        c.signal_entity(EntityInstanceId("account", f"{uid}-Alice"), "deposit", 5)
        wait_until(lambda: entity_value(c, EntityInstanceId("account", f"{uid}-Alice")) == 5, timeout=30,
                   message="the explorer's account")
    finally:
        c.close()
    result = run_client(dts_emulator.endpoint, uid, "--orchestrations", "1", "--accounts", f"{uid}-")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Alice" not in result.stdout
    assert "Total across accounts before 1300, after 1300; lowest balance 600" in result.stdout
