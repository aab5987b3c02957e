"""The emulator as an installed package, used from a throwaway project as a user would.

A fresh venv outside this checkout gets the package (built from a copy of its sources) with
the testing page's install line, pinned by constraints.txt; then pytest runs there with no
conftest.py, so ``dts_emulator`` can only come from the package's ``pytest11`` entry point,
and ``emulator`` can only be imported from site-packages. The testing page's example test is
copied from that page itself.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from dev import venv_python, venv_tool
from tests.helpers import ROOT

pytestmark = pytest.mark.slow  # a fresh venv and a package install

README = (ROOT / "docs" / "testing.md").read_text()  # the testing page: install line, example

# More tests for the throwaway project: what else a user relies on.
ISOLATION = '''
import emulator
from durabletask.client import TaskHubGrpcClient


def test_emulator_comes_from_the_installed_package():
    assert "site-packages" in emulator.__file__


def test_one_leaves_an_instance_and_skipped_time(dts_emulator):
    client = TaskHubGrpcClient(host_address=dts_emulator.address)
    client.schedule_new_orchestration("unserved", instance_id="left-behind")
    dts_emulator.advance(3600)
    assert client.get_orchestration_state("left-behind") is not None


def test_two_sees_neither(dts_emulator):
    client = TaskHubGrpcClient(host_address=dts_emulator.address)
    assert client.get_orchestration_state("left-behind") is None
    assert dts_emulator.backend.clock.skipped == 0
'''

OPTIONS = '''
import os

import pytest


def test_default_follows_the_command_line(dts_emulator):
    assert dts_emulator.time_skipping == (os.environ["EXPECT_SKIPPING"] == "1")


@pytest.mark.dts_emulator(time_skipping=False)
def test_a_marker_overrides_the_command_line(dts_emulator):
    assert not dts_emulator.time_skipping


@pytest.mark.dts_emulator(time_skiping=True)
def test_a_misspelt_option_is_an_error(dts_emulator):
    pass
'''

DASHBOARD = '''
import socket
import urllib.request

from emulator.testing import Emulator


def test_the_dashboard_is_served_from_the_installed_package():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Emulator(dashboard_port=port) as emu:
        with urllib.request.urlopen(emu.dashboard + "/") as page:
            assert page.status == 200 and b"<html" in page.read().lower()
'''


def readme_example(name: str = "test_reminder.py") -> tuple[str, str]:
    """The file name and the code of one of the testing page's marked example tests."""
    m = re.search(rf"<!-- example: ({re.escape(name)}) -->\n```python\n(.*?)```", README, re.S)
    assert m, f"docs/testing.md lost its marked example {name}"
    return m.group(1), m.group(2)


def readme_install_extras() -> list[str]:
    """What the testing page's install line adds after the package itself (the SDK's DTS flavour, pytest)."""
    m = re.search(r"^\.venv/bin/pip install /path/to/this/repository (.+)$", README, re.M)
    assert m, "docs/testing.md lost its install line"
    return m.group(1).split()


def copy_package_sources(target: Path) -> Path:
    """What `pip install .` reads, without this checkout's build litter or venv."""
    target.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, target / name)
    shutil.copytree(ROOT / "emulator", target / "emulator", ignore=shutil.ignore_patterns("__pycache__"))
    return target


def outcomes(junit: Path) -> dict[str, str]:
    """Test name -> passed, failed, error or skipped, from pytest's JUnit XML."""
    result = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        result[case.get("name")] = kinds[0] if kinds else "passed"
    return result


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """An empty project with its own venv and the package installed, as the README says."""
    root = tmp_path_factory.mktemp("throwaway")
    source = copy_package_sources(root / "dts-emulator-source")
    project = root / "project"
    project.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(project / ".venv")], check=True, timeout=120)
    env = clean_env()
    pip = [str(project / venv_python(Path(".venv"))), "-m", "pip", "install", "-q"]
    install = subprocess.run([*pip, str(source), *readme_install_extras(), "-c",
                              str(ROOT / "constraints.txt")], cwd=project, env=env, capture_output=True, text=True,
                             timeout=540)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    return project


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTEST_ADDOPTS")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_COMPILE"] = "0"  # no .pyc files written at install time (Python writes those it imports)
    return env


def run_pytest(project: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    junit = project / f"junit-{time.monotonic_ns()}.xml"
    started = time.perf_counter()
    result = subprocess.run([str(project / venv_tool(Path(".venv"), "pytest")), "-p", "no:cacheprovider",
                             f"--junitxml={junit}", *args], cwd=cwd or project, env={**clean_env(), **(env or {})},
                            capture_output=True, text=True, timeout=120)
    return result, outcomes(junit), time.perf_counter() - started


@pytest.mark.timeout(600)
def test_the_readme_example_passes_in_a_fresh_project_through_the_entry_point(project):
    name, code = readme_example()
    (project / name).write_text(code)
    result, seen, seconds = run_pytest(project, name)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert seen == {"test_reminder_fires_after_one_day": "passed"}
    print(f"README example (one-day timer) in a fresh project: pytest took {seconds:.2f} s")  # shown with -s


@pytest.mark.timeout(600)
def test_the_entity_example_passes_in_a_fresh_project(project):
    name, code = readme_example("test_counter.py")
    (project / name).write_text(code)
    result, seen, _ = run_pytest(project, name)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert seen == {"test_signals_add_up": "passed"}


@pytest.mark.timeout(600)
def test_the_fixture_isolates_tests_and_takes_its_options_from_marker_and_command_line(project):
    (project / "test_isolation.py").write_text(ISOLATION)
    (project / "test_options.py").write_text(OPTIONS)
    for flag, expected in (([], "0"), (["--dts-time-skipping"], "1")):
        result, seen, _ = run_pytest(project, "test_isolation.py", "test_options.py", *flag,
                                     env={"EXPECT_SKIPPING": expected})
        assert seen == {
            "test_emulator_comes_from_the_installed_package": "passed",
            "test_one_leaves_an_instance_and_skipped_time": "passed",
            "test_two_sees_neither": "passed",
            "test_default_follows_the_command_line": "passed",
            "test_a_marker_overrides_the_command_line": "passed",
            "test_a_misspelt_option_is_an_error": "error",
        }, result.stdout[-3000:]
        assert "dts_emulator does not know time_skiping; it takes: time_skipping" in result.stdout


@pytest.mark.timeout(600)
def test_the_console_script_the_dashboard_and_a_conftest_that_also_names_the_plugin(project):
    script = project / venv_tool(Path(".venv"), "dts-emulator")
    help_text = subprocess.run([str(script), "--help"], capture_output=True, text=True, env=clean_env(), timeout=60)
    assert help_text.returncode == 0 and help_text.stdout.startswith("usage: dts-emulator")
    assert "--time-skipping" in help_text.stdout
    (project / "test_dashboard.py").write_text(DASHBOARD)
    result, seen, _ = run_pytest(project, "test_dashboard.py")
    assert seen == {"test_the_dashboard_is_served_from_the_installed_package": "passed"}, result.stdout[-3000:]
    # A project that also lists the module in pytest_plugins (as this repository's conftest.py does) works too.
    both = project / "both"
    both.mkdir()
    (both / "conftest.py").write_text('pytest_plugins = ["emulator.pytest_plugin"]\n')
    (both / "test_both.py").write_text("def test_fixture(dts_emulator):\n"
                                       "    assert dts_emulator.taskhub == 'default'\n")
    result, seen, _ = run_pytest(project, "--rootdir", str(both), str(both), cwd=both)
    assert seen == {"test_fixture": "passed"}, result.stdout[-3000:] + result.stderr[-3000:]
