"""The counter entity and the orchestration's logic, without a server."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from durabletask import entities

from tests.helpers import ROOT
from worker import counter, counter_workflow


class FakeEntityContext:
    """Just what the counter touches of EntityContext."""

    def __init__(self, operation: str, state=None):
        self.operation = operation
        self.state = state
        self.entity_id = entities.EntityInstanceId("counter", "k")

    def get_state(self, intended_type=None, default=None):
        return default if self.state is None else self.state

    def set_state(self, value):
        self.state = value


@pytest.mark.parametrize("operation, amount, start, expected", [
    ("add", 5, None, 5), ("add", -3, 10, 7), ("subtract", 4, 10, 6), ("reset", None, 42, 0), ("get", None, 9, 9),
])
def test_operations(operation, amount, start, expected):
    ctx = FakeEntityContext(operation, start)
    assert counter(ctx, amount) == expected
    assert (ctx.state if ctx.state is not None else 0) == expected


@pytest.mark.parametrize("bad", [True, 1.5, "3", None, [1]])
@pytest.mark.parametrize("operation", ["add", "subtract"])
def test_non_integer_amounts_are_rejected_with_their_name(operation, bad):
    ctx = FakeEntityContext(operation, 1)
    with pytest.raises(ValueError) as err:
        counter(ctx, bad)
    assert operation in str(err.value) and repr(bad) in str(err.value)
    assert ctx.state == 1


def test_unknown_operation_lists_the_supported_ones():
    with pytest.raises(ValueError) as err:
        counter(FakeEntityContext("multiply", 1), 2)
    assert "'multiply'" in str(err.value)
    for name in ("add", "subtract", "get", "reset"):
        assert name in str(err.value)


class FakeOrchestrationContext:
    def __init__(self):
        self.signals = []
        self.calls = []

    def signal_entity(self, entity_id, operation, input=None):
        self.signals.append((str(entity_id), operation, input))

    def call_entity(self, entity_id, operation, input=None):
        self.calls.append((str(entity_id), operation, input))
        return "call-task"


def test_orchestration_signals_three_times_then_calls_get():
    ctx = FakeOrchestrationContext()
    steps = counter_workflow(ctx, "abc")
    assert next(steps) == "call-task"
    assert ctx.signals == [("@counter@abc", "add", 10), ("@counter@abc", "add", 5), ("@counter@abc", "subtract", 3)]
    assert ctx.calls == [("@counter@abc", "get", None)]
    with pytest.raises(StopIteration) as done:
        steps.send(12)
    assert done.value.value == "Counter 'abc' final value: 12"


def test_the_sample_is_importable_without_side_effects():
    """Importing client and worker starts nothing: no thread, no connection, no handler, no log set-up, no output.

    Run in a fresh interpreter whose ENDPOINT is a socket this test listens on, so a connection shows.
    """
    # The handlers are compared with the interpreter's own before the imports: they differ when the
    # test runs with SIGINT ignored (a script's background job), and the imports must change neither.
    probe = ("import json, logging, signal, sys, threading\n"
             "before = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)]\n"
             "import client\n"
             "client_imports_worker = 'worker' in sys.modules\n"
             "import worker\n"
             "after = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)]\n"
             "print(json.dumps({'threads': threading.active_count(), 'client_imports_worker': client_imports_worker,\n"
             "  'handlers': [a is b for a, b in zip(after, before)],\n"
             "  'logging': len(logging.getLogger().handlers)}))\n")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
        result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60,
                                env={"PATH": "/usr/bin:/bin", "ENDPOINT": endpoint})
        assert result.returncode == 0 and result.stderr == "", result.stderr
        assert json.loads(result.stdout) == {"threads": 1, "client_imports_worker": False, "handlers": [True, True],
                                             "logging": 0}
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
