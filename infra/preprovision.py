"""azd's preprovision hook: check the azd environment's values before anything is created.

Bicep checks lengths and ranges at preflight, but it has no pattern check and cannot tell a
CIDR range from a typo, so a bad task hub name or allow-list entry would fail mid-deployment
(or, for the allow-list, lock the apps out). azd passes its environment to hooks; this reads
the values that feed infra/main.parameters.json, reports every problem at once and exits 1.
It also warns when the values ask an existing scheduler for another region or SKU (the
DTS_SCHEDULER_* values main.bicep outputs after a provision), which Azure cannot do in place.
Standard library only, as it runs before any venv exists.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

# Variable -> (description of what is accepted, check). Ranges match infra/main.bicep's decorators.
TASK_HUB_NAME = re.compile(r"[A-Za-z0-9-]{3,64}")
LOCATION_NAME = re.compile(r"[a-z0-9]+")
PRINCIPAL_TYPES = ("User", "ServicePrincipal", "Group")
SKU_NAMES = ("Consumption", "Dedicated")
INTEGER_RANGES = {
    "DTS_CAPACITY": (1, 3),  # a Dedicated scheduler has at most 3 capacity units
    "CLIENT_REPEAT_SECONDS": (10, None),
    "WORKER_MAX_REPLICAS": (1, 30),
    "WORKER_MAX_CONCURRENT_WORK_ITEMS": (1, 1000),
}


def allow_list_problems(value: str) -> list[str]:
    entries = [entry.strip() for entry in value.split(",") if entry.strip()]
    if not entries:
        return ["DTS_IP_ALLOWLIST is empty, which would deny every caller; leave it unset for 0.0.0.0/0"]
    problems = []
    for entry in entries:
        try:
            ipaddress.ip_network(entry)
        except ValueError as exc:
            problems.append(f"DTS_IP_ALLOWLIST entry '{entry}' is not a CIDR range like 203.0.113.0/24 ({exc})")
    return problems


def integer_problem(name: str, value: str, low: int, high: int | None) -> str | None:
    bounds = f"{low} to {high}" if high is not None else f"{low} or more"
    try:
        number = int(value)
    except ValueError:
        return f"{name} '{value}' is not a whole number ({bounds})"
    if number < low or (high is not None and number > high):
        return f"{name} is {number}; it must be {bounds}"
    return None


def problems(env: Mapping[str, str]) -> list[str]:
    """What is wrong with the values that are set; unset ones take main.parameters.json's defaults."""
    found = []
    if (hub := env.get("DTS_TASKHUB_NAME")) is not None and not TASK_HUB_NAME.fullmatch(hub):
        found.append(f"DTS_TASKHUB_NAME '{hub}' must be 3-64 letters, digits or hyphens")
    if (location := env.get("DTS_LOCATION")) is not None and not LOCATION_NAME.fullmatch(location):
        found.append(f"DTS_LOCATION '{location}' is not a region name like westus2 (lower case, no spaces)")
    if (kind := env.get("AZURE_PRINCIPAL_TYPE")) is not None and kind not in PRINCIPAL_TYPES:
        found.append(f"AZURE_PRINCIPAL_TYPE '{kind}' must be one of: {', '.join(PRINCIPAL_TYPES)}")
    if (sku := env.get("DTS_SKU_NAME")) is not None and sku not in SKU_NAMES:
        found.append(f"DTS_SKU_NAME '{sku}' must be one of: {', '.join(SKU_NAMES)}")
    if (allow_list := env.get("DTS_IP_ALLOWLIST")) is not None:
        found += allow_list_problems(allow_list)
    for name, (low, high) in INTEGER_RANGES.items():
        if (value := env.get(name)) is not None and (problem := integer_problem(name, value, low, high)):
            found.append(problem)
    return found


PARAMETERS_FILE = Path(__file__).with_name("main.parameters.json")
# A requested value and what the deployed scheduler reports (main.bicep's outputs).
DEPLOYED = {"DTS_LOCATION": "DTS_SCHEDULER_LOCATION", "DTS_SKU_NAME": "DTS_SCHEDULER_SKU_NAME"}


def defaults() -> dict[str, str]:
    """`${VARIABLE=default}` from main.parameters.json: what azd uses for an unset value."""
    return dict(re.findall(r"\$\{(\w+)=([^}]*)\}", PARAMETERS_FILE.read_text()))


def _name(value: str) -> str:
    return value.replace(" ", "").lower()  # Azure may answer "West US 2" for westus2


def scheduler_changes(env: Mapping[str, str]) -> list[str]:
    """Warnings for a region or SKU other than the existing scheduler's; none before the first provision."""
    fallback = defaults()
    found = []
    location, deployed = env.get("DTS_LOCATION") or fallback["DTS_LOCATION"], env.get(DEPLOYED["DTS_LOCATION"])
    if deployed and _name(location) != _name(deployed):
        found.append(
            f"DTS_LOCATION is {location}, but this environment's scheduler is in {deployed} "
            f"({DEPLOYED['DTS_LOCATION']}). Azure cannot move a scheduler, so unless it was deleted this "
            f"provision fails at the scheduler. To keep it: `azd env set DTS_LOCATION {_name(deployed)}`. To move "
            "it: `azd down` first (its orchestrations and entities are deleted), or use a new environment "
            "(`azd env new`).")
    sku, deployed = env.get("DTS_SKU_NAME") or fallback["DTS_SKU_NAME"], env.get(DEPLOYED["DTS_SKU_NAME"])
    if deployed and _name(sku) != _name(deployed):
        found.append(
            f"DTS_SKU_NAME is {sku}, but this environment's scheduler is {deployed} "
            f"({DEPLOYED['DTS_SKU_NAME']}). Azure may refuse to change an existing scheduler's SKU; if it "
            f"does, keep it (`azd env set DTS_SKU_NAME {deployed}`) or `azd down` first (its data is deleted).")
    return found


def main(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    for warning in scheduler_changes(env):
        print(f"preprovision: warning: {warning}", file=sys.stderr)
    found = problems(env)
    for problem in found:
        print(f"preprovision: {problem}", file=sys.stderr)
    if found:
        print("preprovision: nothing was created; fix with `azd env set <NAME> <value>` and run azd again",
              file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
