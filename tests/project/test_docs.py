"""The README and the docs pages stay true: settings, flags, targets, excerpts and the commands they show."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

import settings
from emulator.cli import parse_args
from tests.helpers import ROOT, all_docs, doc_page

README = doc_page("README")
DOCS = all_docs()
MAKEFILE = (ROOT / "Makefile").read_text()


def code_blocks() -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", DOCS, re.S)


def test_every_emulator_flag_is_documented():
    flags = set(re.findall(r"add_argument\(\s*\"(--[a-z-]+)\"", (ROOT / "emulator" / "cli.py").read_text()))
    assert flags, "no flags found in emulator/cli.py"
    for flag in flags:
        assert f"`{flag}" in doc_page("emulator"), f"docs/emulator.md does not document {flag}"
    assert parse_args(["--port", "0", "--in-memory"]).in_memory


@pytest.mark.parametrize("path", ["settings.py", "client_support.py", "emulator/cli.py", "scripts/demo.py"])
def test_every_environment_variable_is_documented(path):
    source = (ROOT / path).read_text()
    names = set(re.findall(r"env(?:iron)?\.get\(\"([A-Z_]+)\"", source))
    names |= {settings.CONNECTION_STRING_VARIABLE} if path == "settings.py" else set()
    for name in names:
        assert f"`{name}`" in DOCS, f"the docs do not document {name} (read by {path})"


def test_every_make_target_in_the_readme_exists():
    targets = set(re.findall(r"^([a-z]+):", MAKEFILE, re.M))
    mentioned = set(re.findall(r"`make ([a-z]+)`", DOCS))
    mentioned |= {line.split()[1] for block in code_blocks() for line in block.splitlines()
                  if line.startswith("make ")}
    assert {"demo", "test", "emulator", "worker", "client"} <= mentioned
    for target in mentioned:
        assert target in targets, f"the docs mention make {target}, which the Makefile lacks"


def test_code_excerpts_are_the_real_code():
    """The sample page's excerpts are in worker.py; the testing page's recipes are lines of its tests.

    (Its marked example is a whole file, which tests/project/test_package.py runs in a throwaway project.)
    """
    worker_source = (ROOT / "worker.py").read_text()
    excerpts = re.findall(r"```python\n(.*?)```", doc_page("sample"), re.S)
    assert excerpts, "docs/sample.md lost its excerpts"
    for block in excerpts:
        assert block in worker_source, f"docs/sample.md excerpt no longer matches worker.py:\n{block}"
    tests_source = (ROOT / "tests" / "engine" / "test_time_skipping.py").read_text()
    recipes = re.findall(r"(?<!-->\n)```python\n(.*?)```", doc_page("testing"), re.S)
    assert recipes, "the testing page lost its recipe"
    for line in (line for block in recipes for line in block.splitlines() if not line.startswith("...")):
        assert line.strip() in tests_source, f"docs/testing.md recipe line not in test_time_skipping.py: {line}"


def test_every_page_is_linked_from_the_readme_and_every_link_resolves():
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert len(pages) >= 6
    for name in pages:
        assert f"](docs/{name}" in README, f"the README does not link docs/{name}"
    for source in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", source.read_text()):
            assert (source.parent / target).exists(), f"{source.name} links {target}, which does not exist"


def test_azure_examples_parse_as_settings():
    exports = {k: v for k, v in re.findall(r"export (\w+)=\"?([^\"\n]+)\"?", doc_page("sample"))
               if not v.startswith("$(")}
    filled = {k: v.replace("<scheduler>", "s").replace("<region>", "r").replace("<hub>", "h")
              for k, v in exports.items()}
    from_env = settings.load({k: v for k, v in filled.items() if k != settings.CONNECTION_STRING_VARIABLE})
    from_string = settings.load({settings.CONNECTION_STRING_VARIABLE: filled[settings.CONNECTION_STRING_VARIABLE]})
    assert from_env.endpoint == from_string.endpoint == "https://s.r.durabletask.io"
    assert from_env.taskhub == from_string.taskhub == "h"


def test_emulator_help_runs():
    result = subprocess.run([sys.executable, "-m", "emulator", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and "--in-memory" in result.stdout


def expected_output() -> list[str]:
    block = README.split("<!-- expected-output -->", 1)[1]
    return re.search(r"```\n(.*?)```", block, re.S).group(1).splitlines()


@pytest.mark.slow
def test_make_demo_runs_twice_and_state_survives(tmp_path):
    """What `make demo` runs, in a copy of the project, on a free port: the README's output, then the state it left."""
    import socket

    project = tmp_path / "project"
    project.mkdir()
    for name in ("worker.py", "client.py", "client_support.py", "settings.py", "emulator", "scripts"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, project / name)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"PATH": "/usr/bin:/bin", "ENDPOINT": f"http://localhost:{port}", "DASHBOARD_PORT": "0"}
    first = subprocess.run([sys.executable, "scripts/demo.py"], cwd=project, env=env, capture_output=True,
                           text=True, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.splitlines() == expected_output()
    assert "starting the built-in emulator" in first.stderr
    assert "to look around afterwards" not in first.stderr, "no hint to a dashboard that is off"
    second = subprocess.run([sys.executable, "scripts/demo.py"], cwd=project, env=env, capture_output=True,
                            text=True, timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "final value: 24" in second.stdout and "Entity 'my-counter' value: 150" in second.stdout
    # The accounts go on from where the first run left them (700 and 600): the same moves again.
    assert second.stdout.splitlines()[-2:] == ["Balances: 'account-A' 1400, 'account-B' 1200",
                                               "Summary: every part showed its effect"]
    assert "account-A' 1400, 'account-B' 1200" in README, "the README says what the second run ends with"
    assert (project / ".emulator" / "emulator.db").exists()


def test_azd_section_names_real_outputs_and_parameters():
    main = (ROOT / "infra" / "main.bicep").read_text()
    deploy = doc_page("deploy")
    outputs = set(re.findall(r"^output (\w+) ", main, re.M))
    for name in re.findall(r"azd env get-value (\w+)", deploy):
        assert name in outputs, f"docs/deploy.md reads {name}, which infra/main.bicep does not output"
    parameters_file = (ROOT / "infra" / "main.parameters.json").read_text()
    for name in ("DTS_SKU_NAME", "DTS_CAPACITY", "DTS_TASKHUB_NAME", "CLIENT_REPEAT_SECONDS"):
        assert name in deploy and "${" + name in parameters_file
    assert "schedulerIpAllowlist" in deploy and "param schedulerIpAllowlist" in main


def test_make_demo_reports_bad_settings_clearly():
    result = subprocess.run([sys.executable, "scripts/demo.py"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "ENDPOINT": "localhost:8080"})
    assert result.returncode == 2
    assert "not a URL" in result.stderr and "Traceback" not in result.stderr
