"""The limits DTS enforces on IDs and sizes; each check returns a message or None."""

from __future__ import annotations

import re

MAX_ID_LENGTH = 100
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f]")


def check_instance_id(instance_id: str) -> str | None:
    if not instance_id:
        return "instance ID must not be empty"
    if len(instance_id) > MAX_ID_LENGTH:
        return f"instance ID is {len(instance_id)} characters; the limit is {MAX_ID_LENGTH}"
    if instance_id.startswith("@"):
        return f"instance ID '{instance_id}' starts with '@', which is reserved for entity IDs"
    if _CONTROL_CHARACTER.search(instance_id):
        return "instance ID must not contain control characters"
    return None


def check_entity_id(entity_id: str) -> str | None:
    """Entity IDs look like ``@name@key``: name lower-cased, neither part contains '@'."""
    if len(entity_id) > MAX_ID_LENGTH:
        return f"entity ID is {len(entity_id)} characters; the limit is {MAX_ID_LENGTH}"
    parts = entity_id.split("@")
    if len(parts) != 3 or parts[0] != "" or not parts[1]:
        return f"entity ID '{entity_id}' is not of the form '@<name>@<key>'"
    if parts[1] != parts[1].lower():
        return f"entity name '{parts[1]}' must be lower-case in an entity ID"
    if _CONTROL_CHARACTER.search(entity_id):
        return "entity ID must not contain control characters"
    return None


def entity_name(entity_id: str) -> str:
    return entity_id.split("@")[1] if entity_id.count("@") >= 2 else ""
