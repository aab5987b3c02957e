"""pytest plugin: the ``dts_emulator`` fixture, registered by the package's ``pytest11`` entry point.

One in-memory emulator serves the whole session (``dts_emulator_server``: its endpoint
never changes, so a worker may live as long as the session); ``dts_emulator`` empties
it and sets its clock back before each test, so tests cannot see each other's
instances, entities, timers or skipped time.

    @pytest.mark.dts_emulator(time_skipping=True)
    def test_reminder(dts_emulator): ...

``--dts-time-skipping`` (or the ini option ``dts_emulator_time_skipping = true``) turns
time skipping on for every test that does not say otherwise in its marker.
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
