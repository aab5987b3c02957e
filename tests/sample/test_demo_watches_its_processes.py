"""`make demo` (scripts/demo.py) in a copy of the project: it shows the worker's errors, stops at once when a
child it started cannot go on, ends on SIGTERM/SIGHUP/Ctrl-C with nothing left running, and runs alone."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.demo import START_TIMEOUT
from tests.helpers import ROOT, Process, free_port

SAMPLE = ("worker.py", "client.py", "client_support.py", "settings.py", "dts_emulator", "scripts")
pytestmark = [pytest.mark.slow,  # each starts an emulator, a worker and a client as processes
              pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="reads the process table from /proc")]


@pytest.fixture
def project(tmp_path):
    """What `make demo` runs, in a folder of its own; at the end, no process runs in it (else the test fails)."""
    target = tmp_path / "project"
    target.mkdir()
    for name in SAMPLE:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target / name)
    yield target
    left = running_in(target)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left running in the project: {left}"


def running_in(folder: Path) -> dict[int, str]:
    """Every process whose working directory is ``folder``, with its command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(entry / "cwd")) == folder:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


def demo_env(**extra: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "ENDPOINT": f"http://localhost:{free_port()}", "DASHBOARD_PORT": "0", **extra}


def run_demo(project: Path, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/demo.py", *args], cwd=project, env=demo_env(**env),
                          capture_output=True, text=True, timeout=timeout)


# Started as from a terminal, where Ctrl-C reaches it: under a pytest started with SIGINT ignored (a
# script's background job) the demo would inherit that, and Python leaves an ignored SIGINT ignored.
# exec keeps the restored default.
AS_FROM_A_TERMINAL = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                      "os.execv(sys.argv[1], sys.argv[1:])")


def start_demo(project: Path, *args: str, **env: str) -> Process:
    return Process([sys.executable, "-c", AS_FROM_A_TERMINAL, sys.executable, "scripts/demo.py", *args],
                   env=demo_env(**env), cwd=project)


def plant(project: Path, old: str, new: str) -> None:
    source = (project / "worker.py").read_text()
    assert old in source
    (project / "worker.py").write_text(source.replace(old, new, 1))


def test_an_import_error_in_the_worker_stops_the_demo_at_once_with_the_error(project):
    plant(project, "import settings\n", "import settings\nimport no_such_module\n")
    result = run_demo(project, timeout=60)  # without watching the worker, the client would wait 5 x 60 s
    assert result.returncode == 1, result.stderr
    assert "worker| ModuleNotFoundError: No module named 'no_such_module'" in result.stderr
    assert "the worker exited with status 1, so the demo stops" in result.stderr
    assert "Starting entity operations demo" not in result.stdout, "the client was never started"
    assert "to look around afterwards" not in result.stderr
    assert "no_such_module" in (project / ".emulator" / "worker.log").read_text()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_an_entity_error_shows_its_traceback_and_a_stop_signal_leaves_nothing_running(project, sig):
    plant(project, '    if operation == "add":\n', '    if operation == "add":\n        no_such_name  # noqa\n')
    demo = start_demo(project, "--counter-only")
    try:
        demo.wait_for_line(r"^worker\| NameError: name 'no_such_name' is not defined", timeout=60)
        demo.wait_for_line(r"^worker\|   File .*worker.py\", line \d+, in counter")
        demo.wait_for_line("my-counter-orch-5' final value")  # then the client waits for the counter: quiet
        children = running_in(project)
        assert len(children) == 4, f"the demo, its emulator, worker and client: {children}"
        stopping_from = len(demo.lines)
        demo.signal(sig)
        assert demo.wait(timeout=60) == 130
    finally:
        demo.stop()
    # One line of its own, no traceback, and nothing after it. (The worker retries its failing batch and
    # prints on: a line of its may come between the signal and the demo's handler, never after that.)
    after = demo.lines[stopping_from:]
    stopped = [i for i, line in enumerate(after) if line.startswith("demo: stopped (")]
    assert len(stopped) == 1 and stopped[0] == len(after) - 1, after
    assert all(line.startswith("worker|") for line in after[:-1]), after
    assert running_in(project) == {}


def test_its_emulator_cannot_start_so_it_stops_at_once_and_says_why(project):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        # Sooner than the demo's own deadline for the emulator: it must notice the exit, not wait it out.
        result = run_demo(project, timeout=START_TIMEOUT - 5, DASHBOARD_PORT=str(taken.getsockname()[1]))
    assert result.returncode == 2
    assert "already in use" in result.stderr and "--dashboard-port" in result.stderr  # the emulator's own reason
    assert "demo: the emulator could not start (exit status 2)" in result.stderr
    assert "using the scheduler" not in result.stderr and "starting the worker" not in result.stderr


@pytest.mark.parametrize("value", ["abc", "-1", "70000"])
def test_a_dashboard_port_that_is_no_port_is_refused_by_name(project, value):
    result = run_demo(project, timeout=60, DASHBOARD_PORT=value)
    assert result.returncode == 2
    assert f"DASHBOARD_PORT '{value}' is not a port number" in result.stderr
    assert "starting the built-in emulator" not in result.stderr


def test_port_0_and_a_task_hub_of_its_own_are_served(project):
    result = run_demo(project, "--counter-only", ENDPOINT="http://localhost:0", TASKHUB="nope")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "starting the built-in emulator on a free port (ENDPOINT's port is 0), task hub 'nope'" in result.stderr
    assert "task hubs:     nope" in result.stderr
    assert "Summary: 5 of 5 orchestrations completed successfully" in result.stdout


def test_a_successful_run_with_a_dashboard_ends_with_where_to_look(project):
    dashboard = free_port()
    result = run_demo(project, "--counter-only", DASHBOARD_PORT=str(dashboard), TASKHUB="mine")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"demo: to look around afterwards: `make emulator ARGS=\"--task-hubs mine\"`, then open "
        f"http://localhost:{dashboard} (the state is kept in .emulator/)")


def test_a_second_demo_says_plainly_that_one_is_running(project):
    env = demo_env()
    first = Process([sys.executable, "scripts/demo.py", "--counter-only", "--repeat", "60"], env=env, cwd=project)
    try:
        first.wait_for_line("=== Round 1 ===", timeout=60)
        second = subprocess.run([sys.executable, "scripts/demo.py"], cwd=project, env=env, capture_output=True,
                                text=True, timeout=60)
        assert second.returncode == 2
        assert f"another demo is running in {project} (pid {first.proc.pid}, in {project})" in second.stderr
        assert "starting the built-in emulator" not in second.stderr
    finally:
        first.signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 130
