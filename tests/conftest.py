"""Fixtures: one emulator per test session (in this process), fresh IDs per test, in-process workers.

Tests that stop, kill or restart the emulator, or check its command line, start it as a
process of its own (``fresh_emulator``, ``tests.helpers.Emulator``).
"""

from __future__ import annotations

import os
import shutil
import uuid

import pytest
from durabletask import client as dt_client
from durabletask import worker as dt_worker

from tests import scheduling
from tests.helpers import Emulator, InProcessEmulator

# The package's pytest plugin (dts_emulator), as an installed package's entry point would load it.
pytest_plugins = ["emulator.pytest_plugin"]


@pytest.hookimpl(optionalhook=True)  # a run without pytest-xdist never calls it
def pytest_xdist_make_scheduler(config, log):
    """Parallel workers (``-n``) share the tests as tests/scheduling.py says, unless ``--dist`` chose otherwise."""
    return scheduling.scheduler(config, log) if config.getoption("dist") == "load" else None


def pytest_collection_modifyitems(items):
    scheduling.slow_first(items)


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    """A shared emulator with a persistent file, in this process; tests use their own uuid-based IDs."""
    emu = InProcessEmulator(tmp_path_factory.mktemp("emulator") / "shared.db", task_hubs=("default", "other")).start()
    yield emu
    emu.stop()


@pytest.fixture
def engine_emulator():
    """An in-memory emulator of the test's own, in this process, for assertions on the engine's state."""
    emu = InProcessEmulator(None).start()
    yield emu
    emu.stop()


@pytest.fixture
def engine_client(engine_emulator):
    """A client of the test's own emulator."""
    c = dt_client.TaskHubGrpcClient(host_address=engine_emulator.address)
    yield c
    c.close()


@pytest.fixture
def fresh_emulator(tmp_path):
    """An emulator of the test's own, for tests that stop, kill or restart it."""
    emu = Emulator(tmp_path / "emulator.db").start()
    yield emu
    emu.stop()


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
def client(emulator):
    c = dt_client.TaskHubGrpcClient(host_address=emulator.address)
    yield c
    c.close()


class WorkerFactory:
    """Start SDK workers in this process against an address; stop them all at teardown."""

    def __init__(self):
        self.workers: list[dt_worker.TaskHubGrpcWorker] = []

    def __call__(self, address: str, orchestrators=(), activities=(), entities=(), **kwargs):
        w = dt_worker.TaskHubGrpcWorker(host_address=address, **kwargs)
        for fn in orchestrators:
            w.add_orchestrator(fn)
        for fn in activities:
            w.add_activity(fn)
        for fn in entities:
            w.add_entity(fn)
        w.start()
        self.workers.append(w)
        return w

    def stop_all(self):
        for w in self.workers:
            w.stop()


@pytest.fixture
def start_worker():
    factory = WorkerFactory()
    yield factory
    factory.stop_all()


@pytest.fixture(scope="module")
def chromium():
    """Launches Debian's Chromium through Playwright, with extra flags if given; skips where either is missing."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        pytest.skip(f"no Chromium at {path} (Debian: apt-get install chromium)")
    from scripts.screenshots import CHROMIUM_ARGS

    with sync_api.sync_playwright() as p:
        launched = []

        def launch(*extra_args: str):
            launched.append(p.chromium.launch(executable_path=path, args=[*CHROMIUM_ARGS, *extra_args]))
            return launched[-1]
        yield launch
        for b in launched:
            b.close()


@pytest.fixture(scope="module")
def browser(chromium):
    return chromium()


@pytest.fixture
def page(browser):
    """A fresh browser context's page; dialogs are accepted and their messages kept in ``page.dialogs``."""
    context = browser.new_context()
    p = context.new_page()
    p.dialogs = []
    p.on("dialog", lambda d: (p.dialogs.append(d.message), d.accept()))
    yield p
    context.close()
