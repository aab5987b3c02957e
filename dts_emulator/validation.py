"""The limits on IDs, names and sizes; each check returns a message or None.

IDs and names are shown by the dashboard, written to logs and put in URLs, so
besides DTS's own limits (IDs of at most 100 characters, ``@`` reserved for
entities) they may not hold control characters, DEL, or the bidirectional
overrides that make text display as something it is not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_ID_LENGTH = 100
MAX_NAME_LENGTH = 256
"""Orchestration, activity, event and operation names; DTS documents none, and real names are short."""
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""What the SDK's worker receives per message (gRPC's default, which durabletask 1.12 keeps)."""
MIN_MESSAGE_BYTES = 64 * 1024
"""The smallest --max-request-bytes: below it, ordinary work items would not fit."""

# The times a protobuf Timestamp holds (0001-01-01 to 9999-12-31, UTC). Every time the emulator
# answers with, and the dashboard shows, is one: a time stored outside them breaks every page
# and call that lists it.
EARLIEST_SECONDS, LATEST_SECONDS = -62135596800, 253402300799

_UNPRINTABLE = re.compile("[\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


def unprintable(text: str) -> str | None:
    """A description of the first character that may not be in an ID or name, or None."""
    found = _UNPRINTABLE.search(text)
    if found is None:
        return None
    return f"control characters (found U+{ord(found.group()):04X})"


def check_name(field: str, name: str) -> str | None:
    """Names of orchestrations, activities, events and entity operations."""
    if not name:
        return f"{field} must not be empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"{field} is {len(name)} characters; the limit is {MAX_NAME_LENGTH}"
    if bad := unprintable(name):
        return f"{field} must not contain {bad}"
    return None


def check_time(field: str, seconds: float) -> str | None:
    if not EARLIEST_SECONDS <= seconds <= LATEST_SECONDS:
        return f"{field} must be between 0001-01-01 and 9999-12-31 (UTC)"
    return None


def check_instance_id(instance_id: str) -> str | None:
    if not instance_id:
        return "instance ID must not be empty"
    if len(instance_id) > MAX_ID_LENGTH:
        return f"instance ID is {len(instance_id)} characters; the limit is {MAX_ID_LENGTH}"
    if instance_id.startswith("@"):
        return f"instance ID '{instance_id}' starts with '@', which is reserved for entity IDs"
    if bad := unprintable(instance_id):
        return f"instance ID must not contain {bad}"
    return None


def check_entity_id(entity_id: str) -> str | None:
    """Entity IDs look like ``@name@key``: name lower-cased, neither part empty nor containing '@'."""
    if len(entity_id) > MAX_ID_LENGTH:
        return f"entity ID is {len(entity_id)} characters; the limit is {MAX_ID_LENGTH}"
    if bad := unprintable(entity_id):
        return f"entity ID must not contain {bad}"
    parts = entity_id.split("@")
    if len(parts) != 3 or parts[0] != "" or not parts[1]:
        return f"entity ID '{entity_id}' is not of the form '@<name>@<key>'"
    if not parts[2]:
        return f"entity ID '{entity_id}' has an empty key (the form is '@<name>@<key>')"
    if parts[1] != parts[1].lower():
        return f"entity name '{parts[1]}' must be lower-case in an entity ID"
    return None


# A work item's bytes besides its events: IDs, the completion token, field headers.
ENVELOPE_BYTES = 1024


def field_size(blob: bytes) -> int:
    """At least the bytes ``blob`` takes as a field of a message: itself and a header of up to 6 bytes."""
    return len(blob) + 6


def message_size(blobs: Iterable[bytes]) -> int:
    """At least the size of a work item carrying ``blobs``."""
    return ENVELOPE_BYTES + sum(map(field_size, blobs))


def too_large(what: str, size: int, limit: int = MAX_MESSAGE_BYTES) -> str:
    return (f"{what} is {size} bytes; the SDK's worker receives at most {limit} bytes per message "
            f"(--max-request-bytes)")


def entity_name(entity_id: str) -> str:
    return entity_id.split("@")[1] if entity_id.count("@") >= 2 else ""
