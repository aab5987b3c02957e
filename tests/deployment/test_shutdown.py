"""SIGTERM mid-round: the worker and the client exit within the grace period infra/ gives them.

Container Apps sends SIGTERM and kills the replica when terminationGracePeriodSeconds (read
here from infra/resources.bicep) run out; settings.py bounds each process's stop below it, and
answers the probes the Bicep declares.
"""

from __future__ import annotations

import signal
import sys
import time
import urllib.error
import urllib.request

import pytest

import settings
from tests.deployment import bicep_model
from tests.helpers import ROOT, Process, free_port, wait_until

GRACE_SECONDS = bicep_model.load(ROOT / "infra" / "resources.bicep").variables["terminationGracePeriodSeconds"]


def status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def health():
    life = settings.Lifecycle("test")
    port = life.serve_health({settings.HEALTH_PORT_VARIABLE: "0"})
    yield life, port
    life.close_health()


def test_probes_follow_the_process_from_start_to_stop(health):
    life, port = health
    assert (status(port, "/live"), status(port, "/ready")) == (200, 503)  # not started yet
    life.ready()
    assert (status(port, "/live"), status(port, "/ready")) == (200, 200)
    life.stopping.set()  # what the first SIGTERM does
    assert (status(port, "/live"), status(port, "/ready")) == (200, 503)
    assert status(port, "/other") == 404


def test_health_port_unset_listens_nowhere_and_a_bad_or_taken_one_is_logged(health, caplog):
    _, taken = health
    assert settings.Lifecycle("test").serve_health({}) is None
    assert settings.Lifecycle("test").serve_health({settings.HEALTH_PORT_VARIABLE: "http"}) is None
    assert settings.Lifecycle("test").serve_health({settings.HEALTH_PORT_VARIABLE: str(taken)}) is None
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 2
    assert "HEALTH_PORT 'http' is not a port number" in errors[0]
    assert f"cannot listen on HEALTH_PORT {taken}" in errors[1]


@pytest.mark.slow
def test_worker_and_client_stop_within_the_grace_period_after_sigterm_mid_round(emulator, uid):
    """The client's round waits up to 60 s per orchestration: after SIGTERM it gets STOP_SECONDS, no more."""
    assert settings.STOP_SECONDS < GRACE_SECONDS
    port = free_port()
    worker = Process([sys.executable, "worker.py"],
                     env={"ENDPOINT": emulator.endpoint, settings.HEALTH_PORT_VARIABLE: str(port)})
    # Paced so that the round is still scheduling when both get SIGTERM; the orchestrations it
    # schedules after the worker has gone never complete, and the round waits for them.
    client = Process([sys.executable, "client.py", uid, "--orchestrations", "5", "--counter-only"],
                     env={"ENDPOINT": emulator.endpoint, "DEMO_REPEAT_SECONDS": "60", "ORCHESTRATION_INTERVAL": "4"})
    try:
        worker.wait_for_line("worker started")
        assert wait_until(lambda: status(port, "/ready") == 200, message="the worker's readiness probe")
        client.wait_for_line("Scheduling orchestration #2", timeout=60)
        assert "Summary" not in client.output and "Scheduling orchestration #5" not in client.output  # mid-round
        started = time.monotonic()
        worker.signal(signal.SIGTERM)
        client.signal(signal.SIGTERM)
        assert worker.wait(timeout=GRACE_SECONDS) == 0
        worker_seconds = time.monotonic() - started
        # The round schedules its last orchestration after the worker has gone, so it cannot finish.
        assert "Scheduling orchestration #5" not in client.output
        client_code = client.wait(timeout=GRACE_SECONDS)
        client_seconds = time.monotonic() - started
    finally:
        worker.stop()
        client.stop()
    figures = f"worker {worker_seconds:.1f}s, client {client_seconds:.1f}s, grace {GRACE_SECONDS}s"
    # The client was still waiting for an orchestration when its time was up: the bound, not the round, ended it.
    assert f"still stopping and {settings.STOP_SECONDS:.0f}s passed: exiting now" in client.output, client.output
    assert client_code == settings.GIVE_UP_STATUS, figures
    assert worker_seconds < GRACE_SECONDS and client_seconds < GRACE_SECONDS, figures
    assert client_seconds >= settings.STOP_SECONDS, figures
