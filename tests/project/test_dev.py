"""dev.py, the commands on every OS: its logic here, and a real install + demo on the oldest and newest Python."""

from __future__ import annotations

import ast
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest

import dev
from tests.helpers import ROOT, Process, free_port


def test_venv_paths_on_windows_and_elsewhere():
    assert dev.venv_python(PureWindowsPath(r"C:\work\proj\.venv"), "nt") == \
        PureWindowsPath(r"C:\work\proj\.venv\Scripts\python.exe")
    assert dev.venv_tool(PureWindowsPath(r"C:\proj\.venv"), "ruff", "nt") == \
        PureWindowsPath(r"C:\proj\.venv\Scripts\ruff.exe")
    assert dev.venv_python(PurePosixPath("/home/a/.venv"), "posix") == PurePosixPath("/home/a/.venv/bin/python")
    assert dev.venv_tool(PurePosixPath("/p/.venv"), "ruff", "posix") == PurePosixPath("/p/.venv/bin/ruff")


def test_too_old_a_python_gets_one_clear_message():
    assert dev.check_python((3, 10, 0)) is None and dev.check_python((3, 13, 1)) is None
    message = dev.check_python((3, 9, 18))
    assert "Python 3.10 or newer is needed (this is 3.9.18)" in message


def test_an_old_python_is_refused_before_anything_is_installed(tmp_path):
    old = find_python("3.9") or find_python("3.8")
    if old is None:
        pytest.skip("no Python 3.8 or 3.9 here to try dev.py with (looked on PATH and in ~/.pyenv/versions)")
    shutil.copy(ROOT / "dev.py", tmp_path / "dev.py")
    result = subprocess.run([old, "dev.py", "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Python 3.10 or newer is needed" in result.stderr
    assert not (tmp_path / ".venv").exists()


def test_dev_py_needs_only_the_standard_library():
    tree = ast.parse((ROOT / "dev.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported - {"__future__"} <= set(sys.stdlib_module_names)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A Project in a scratch folder whose venv 'exists'; pip calls are recorded, not run."""
    for name in dev.DEV_FILES:
        shutil.copy(ROOT / name, tmp_path / name)
    p = dev.Project(root=tmp_path)
    p.python.parent.mkdir(parents=True)
    p.python.write_text("")
    (p.venv / "lib" / "python3" / "site-packages" / "pip").mkdir(parents=True)
    calls: list[list[str]] = []
    monkeypatch.setattr(dev.subprocess, "run", lambda args, **_: calls.append(list(args)))
    p.calls = calls
    return p


def installed_files(calls: list[list[str]]) -> list[str]:
    for call in calls:
        assert call[-2:] == ["-c", "constraints.txt"], "every install is pinned by the constraints file"
    return [call[call.index("-r") + 1] for call in calls]


def test_install_runs_only_when_a_requirements_file_changed(project):
    project.install(dev=True)
    assert installed_files(project.calls) == ["requirements-emulator.txt", "requirements-dev.txt"]
    project.calls.clear()
    project.install(dev=True)
    assert project.calls == []
    (project.root / "requirements-dev.txt").write_text("-r requirements-emulator.txt\npytest==9.2.0\n")
    project.install(dev=True)
    assert installed_files(project.calls) == ["requirements-dev.txt"]
    project.calls.clear()
    with (project.root / "constraints.txt").open("a") as f:
        f.write("extra==1.0\n")
    project.install(dev=False)
    assert installed_files(project.calls) == ["requirements-emulator.txt"]


def test_a_venv_whose_creation_was_cut_short_is_made_again(project):
    """`timeout -s TERM 2 make demo` on a fresh clone stops `python -m venv` before it installs pip."""
    shutil.rmtree(project.venv / "lib")
    project.create_venv()
    assert project.calls == [[sys.executable, "-m", "venv", str(project.venv)]]
    assert not project.venv.exists(), "the incomplete venv was removed before it was made again"
    project.calls.clear()
    project.python.parent.mkdir(parents=True)
    project.python.write_text("")
    (project.venv / "Lib" / "site-packages" / "pip").mkdir(parents=True)  # as on Windows
    project.create_venv()
    assert project.calls == []


def test_test_command_runs_lint_then_pytest_and_stops_at_lint_errors(project, monkeypatch):
    statuses = iter([1])
    ran: list[list[str]] = []

    def run(args):
        ran.append([str(a) for a in args])
        return next(statuses, 0)

    monkeypatch.setattr(project, "run", run)
    assert dev.main(["test", "-k", "x"], project=project) == 1
    assert len(ran) == 1 and ran[0][0].endswith("ruff") and ran[0][1:] == ["check", "."]
    ran.clear()
    assert dev.main(["test", "-k", "x"], project=project) == 0
    assert ran[1] == [str(project.python), "-m", "pytest", *dev.pytest_args("test", []), "-k", "x"]
    ran.clear()
    assert dev.main(["client", "my-key", "--orchestrations", "2"], project=project) == 0
    assert ran == [[str(project.python), "client.py", "my-key", "--orchestrations", "2"]]


def test_tests_run_on_parallel_workers_and_quick_leaves_the_slow_ones_out():
    assert dev.pytest_args("test", ["-x"], cpus=2) == ["-n", "4", "-x"]
    assert dev.pytest_args("quick", [], cpus=1) == ["-n", "2", "-m", "not slow"]
    assert dev.pytest_args("test", [], cpus=64)[:2] == ["-n", "8"]
    for chosen in (["-n", "0"], ["-n3"], ["--numprocesses=2"], ["-p", "no:xdist"]):
        assert dev.pytest_args("test", chosen, cpus=2) == chosen  # the caller's choice stands
    assert dev.pytest_args("quick", ["-n", "0", "tests/store"], cpus=2) == ["-m", "not slow", "-n", "0", "tests/store"]


def test_unknown_command_is_called_unknown_and_the_commands_listed(capsys):
    assert dev.main(["deploy"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dev.py: unknown command 'deploy'\n")
    assert all(f"  {name} " in err for name in dev.COMMANDS)


@pytest.mark.parametrize("argv, status", [([], 2), (["help"], 0), (["--help"], 0), (["-h"], 0)])
def test_help_lists_each_command_on_a_line_of_its_own(argv, status):
    result = subprocess.run([sys.executable, "dev.py", *argv], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == status
    listed = {line.split()[0]: line for line in (result.stdout + result.stderr).splitlines() if line.startswith("  ")}
    assert list(listed) == list(dev.COMMANDS)
    assert all(len(line.split()) > 3 for line in listed.values()), "each command has a description"
    assert "unknown" not in result.stdout + result.stderr


def test_clean_removes_local_state_only(tmp_path):
    for name in (".venv/bin", ".emulator", "pkg/__pycache__"):
        (tmp_path / name).mkdir(parents=True)
    (tmp_path / "worker.py").write_text("")
    assert dev.main(["clean"], project=dev.Project(root=tmp_path)) == 0
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["pkg", "worker.py"]


def test_makefile_targets_are_dev_py_commands():
    """One source of truth: each Makefile target only calls dev.py, and each dev.py command has a target."""
    rules = dict(re.findall(r"^([a-z.\-/]+):[^\n]*\n\t\$\(DEV\) ([a-z]+)", (ROOT / "Makefile").read_text(), re.M))
    assert {target: command for target, command in rules.items() if not target.startswith(".")} == \
        {command: command for command in dev.COMMANDS if command != "install"}
    assert rules[".venv/.installed-dev"] == rules[".venv/.installed"] == "install"
    recipes = re.findall(r"^\t(.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert all(line.startswith("$(DEV) ") for line in recipes)


def test_readme_shows_both_forms_of_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    for command in ("demo", "test"):
        assert f"make {command}" in readme and f"python dev.py {command}" in readme
    for command in re.findall(r"python dev\.py ([a-z]+)", readme):
        assert command in dev.COMMANDS


# -- the supported Pythons, for real ---------------------------------------------------------


def find_python(version: str) -> str | None:
    """An interpreter of this minor version: pythonX.Y on PATH, else pyenv's; None when there is none."""
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python")))
    for candidate in filter(None, candidates):
        result = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                capture_output=True, text=True)
        if result.returncode == 0 and result.stdout.strip() == version:
            return candidate
    return None


def copy_project(target: Path) -> Path:
    """What `python dev.py demo` needs, in a folder of its own (its venv and .emulator/ land there)."""
    target.mkdir()
    for name in ("dev.py", "worker.py", "client.py", "client_support.py", "settings.py", *dev.DEV_FILES):
        shutil.copy(ROOT / name, target / name)
    for name in ("emulator", "scripts"):
        shutil.copytree(ROOT / name, target / name, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def constraint_pins() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    return {re.sub(r"[-_.]+", "-", name).lower(): version
            for name, version in (line.split("==") for line in lines if "==" in line)}


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("version", [dev.SUPPORTED_PYTHONS[0], dev.SUPPORTED_PYTHONS[-1]], ids=lambda v: f"py{v}")
def test_supported_python_installs_the_pins_and_runs_the_demo(version, tmp_path):
    """The oldest and newest Python the README promises: a new venv, the pinned install, `dev.py demo`."""
    python = find_python(version)
    if python is None:
        pytest.skip(f"Python {version} is not installed here (looked for python{version} on PATH and in "
                    "~/.pyenv/versions)")
    project = copy_project(tmp_path / "project")
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "TASKHUB", "DURABLE_TASK_SCHEDULER_CONNECTION_STRING", "PYTHONPATH")}
    # PIP_COMPILE=0: no .pyc files written at install time (Python writes those it imports), a third of pip's time.
    env.update(ENDPOINT=f"http://localhost:{free_port()}", DASHBOARD_PORT="0", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PIP_COMPILE="0")
    result = subprocess.run([python, "dev.py", "demo"], cwd=project, env=env, capture_output=True, text=True,
                            timeout=540)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Summary: 5 of 5 orchestrations completed successfully" in result.stdout
    assert "starting the built-in emulator" in result.stderr
    venv_python = str(project / dev.venv_python(Path(".venv")))
    made_with = subprocess.run([venv_python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True).stdout.strip()
    assert made_with == version
    listed = json.loads(subprocess.run([venv_python, "-m", "pip", "list", "--format=json"], capture_output=True,
                                       text=True, check=True).stdout)
    pins = constraint_pins()
    unpinned = {item["name"]: item["version"] for item in listed
                if item["name"] not in ("pip", "setuptools")
                and pins.get(re.sub(r"[-_.]+", "-", item["name"]).lower()) != item["version"]}
    assert unpinned == {}, "installed at a version constraints.txt does not pin"
    assert {"starlette", "uvicorn", "grpcio"} <= {re.sub(r"[-_.]+", "-", i["name"]).lower() for i in listed}


CHILD_THAT_STOPS_CLEANLY = """
import signal, sys
signal.signal(signal.SIGTERM, lambda *_: (print('child: stopping cleanly', flush=True), sys.exit(7)))
print('child: ready', flush=True)
signal.pause()
"""


@pytest.mark.skipif(not hasattr(signal, "pause"), reason="POSIX signals")
def test_a_sigterm_to_dev_py_reaches_its_command_which_may_stop_cleanly():
    """`timeout`, IDEs and process managers signal dev.py (or make, which passes SIGTERM on): the demo must hear it."""
    outer = Process([sys.executable, "-c", "import dev, sys; sys.exit(dev.Project().run([sys.executable, '-c', "
                     f"{CHILD_THAT_STOPS_CLEANLY!r}]))"])
    try:
        outer.wait_for_line("^child: ready")
        outer.signal(signal.SIGTERM)
        assert outer.wait() == 7, outer.output
    finally:
        outer.stop()
    assert "child: stopping cleanly" in outer.output


def test_an_install_says_what_it_installs_and_that_the_first_takes_a_while(project, capsys):
    project.install()
    first = capsys.readouterr().out
    assert "installing the packages in requirements-emulator.txt into .venv" in first
    assert "the first time takes a minute or two" in first
    (project.root / "requirements.txt").write_text("durabletask\n")
    project.install()
    again = capsys.readouterr().out
    assert "installing the packages in requirements-emulator.txt" in again and "first time" not in again
