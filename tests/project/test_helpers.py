"""The suite's own helpers stop what they started when they fail, so a failed test cannot hang pytest at exit."""

from __future__ import annotations

import socket
import threading
import urllib.parse

import pytest

from tests import helpers


def test_a_demo_site_whose_demo_fails_leaves_no_emulator_or_worker_running(tmp_path, monkeypatch):
    started: list[helpers.InProcessEmulator] = []

    class Recorded(helpers.InProcessEmulator):
        def start(self):
            started.append(super().start())
            return started[-1]

    monkeypatch.setattr(helpers, "InProcessEmulator", Recorded)
    before = set(threading.enumerate())
    with pytest.raises(AssertionError, match="ended with status 2"):
        helpers.DemoSite(tmp_path / "d.db", demo_args=("no@such-key",))  # '@' is refused: the demo fails
    assert len(started) == 1, "the precondition: DemoSite started an emulator before its demo failed"
    emulator = started[0]
    for port in (emulator.port, urllib.parse.urlsplit(emulator.dashboard).port):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    # A thread that is not a daemon keeps the interpreter, and so pytest, from exiting.
    helpers.wait_until(lambda: not new_threads(before), message="the worker's and emulator's threads to end")


def new_threads(before: set[threading.Thread]) -> list[str]:
    """Threads started since ``before`` that would keep the process alive."""
    return sorted(t.name for t in set(threading.enumerate()) - before if not t.daemon)
