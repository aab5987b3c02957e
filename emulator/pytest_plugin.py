"""pytest plugin: the ``dts_emulator`` fixture, registered by the package's ``pytest11`` entry point.

One in-memory emulator serves the whole session (``dts_emulator_server``: its endpoint
never changes, so a worker may live as long as the session); ``dts_emulator`` empties
it and sets its clock back before each test, so tests cannot see each other's
instances, entities, timers or skipped time.

    @pytest.mark.dts_emulator(time_skipping=True)
    def test_reminder(dts_emulator): ...

``--dts-time-skipping`` (or the ini option ``dts_emulator_time_skipping = true``) turns
time skipping on for every test that does not say otherwise in its marker.

When a test that uses the emulator fails (a ``TimeoutError`` from a wait, say), its report gets
a section "dts_emulator: unfinished instances": what each unfinished orchestration waits for.
"""

from __future__ import annotations

import pytest

from .testing import Emulator

MARKER = "dts_emulator"
MARKER_OPTIONS = ("time_skipping",)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dts-emulator", "Durable Task Scheduler emulator")
    group.addoption("--dts-time-skipping", action="store_true", default=False,
                    help="time skipping for every test that uses dts_emulator (a marker may still turn it off)")
    parser.addini("dts_emulator_time_skipping", type="bool", default=False,
                  help="time skipping for every test that uses dts_emulator")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(time_skipping=False): options of the dts_emulator fixture; with time_skipping=True the "
        "emulator's clock jumps to the next timer, delayed message or scheduled start whenever nothing runs",
    )


def time_skipping_for(item: pytest.Item) -> bool:
    """What the test's marker says, else the command line or ini option; bad options fail the test clearly."""
    default = bool(item.config.getoption("dts_time_skipping") or item.config.getini("dts_emulator_time_skipping"))
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return default
    if marker.args:
        pytest.fail(f"{item.nodeid}: @pytest.mark.{MARKER} takes keywords only, e.g. time_skipping=True",
                    pytrace=False)
    unknown = sorted(set(marker.kwargs) - set(MARKER_OPTIONS))
    if unknown:
        pytest.fail(f"{item.nodeid}: @pytest.mark.{MARKER} does not know {', '.join(unknown)}; "
                    f"it takes: {', '.join(MARKER_OPTIONS)}", pytrace=False)
    value = marker.kwargs.get("time_skipping", default)
    if not isinstance(value, bool):
        pytest.fail(f"{item.nodeid}: time_skipping must be True or False, not {value!r}", pytrace=False)
    return value


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A marker the dts_emulator fixture cannot honour is an error, not silently ignored."""
    marker = item.get_closest_marker(MARKER)
    uses = set(getattr(item, "fixturenames", ()))
    if marker is None or "dts_emulator" in uses:
        return
    own = any(m.name == MARKER for m in getattr(item, "own_markers", ()))
    if own or "dts_emulator_server" in uses:
        pytest.fail(f"{item.nodeid}: @pytest.mark.{MARKER}(...) applies to the dts_emulator fixture, which this test "
                    "does not use, so it would be ignored. Request dts_emulator in the test (it can be next to a "
                    "session-wide worker built on dts_emulator_server), or set the option yourself, e.g. "
                    "dts_emulator_server.time_skipping = True", pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A failed test that uses the emulator: its report says what each unfinished instance waits for."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed or call.when != "call":
        return
    funcargs = getattr(item, "funcargs", {})
    emulator = funcargs.get("dts_emulator") or funcargs.get("dts_emulator_server")
    if not isinstance(emulator, Emulator) or emulator.port is None:
        return
    try:
        text = emulator.unfinished()
    except Exception as exc:  # noqa: BLE001 - the report must not hide the test's own failure
        text = f"(could not read the emulator's state: {exc!r})"
    if text:
        report.sections.append(("dts_emulator: unfinished instances", text))


@pytest.fixture(scope="session")
def dts_emulator_server():
    """The session's emulator (in memory, loopback, a free port), as it is: for session-wide workers."""
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def dts_emulator(request: pytest.FixtureRequest, dts_emulator_server: Emulator) -> Emulator:
    """The emulator, empty and on the wall clock (or skipping time, as the test asks): ``endpoint``, ``taskhub``."""
    dts_emulator_server.reset(time_skipping=time_skipping_for(request.node))
    yield dts_emulator_server
    dts_emulator_server.time_skipping = False
