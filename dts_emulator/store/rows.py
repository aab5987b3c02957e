"""The store's row types and how they map to SQLite columns: rows in, rows out, no protobuf."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

ORCHESTRATION = "orchestration"
ENTITY = "entity"
ACTIVITY = "activity"


@dataclass
class InstanceRow:
    hub: str
    instance_id: str
    execution_id: str
    name: str
    version: str | None
    status: int
    input: str | None
    output: str | None
    custom_status: str | None
    failure: bytes | None
    created_at: float
    updated_at: float
    completed_at: float | None
    scheduled_start: float | None
    parent_instance_id: str | None
    parent_execution_id: str | None
    parent_task_id: int | None
    tags: dict[str, str]


@dataclass
class MessageRow:
    id: int
    hub: str
    kind: str
    target: str
    execution_id: str | None
    sender: str | None
    visible_at: float
    payload: bytes


@dataclass
class EntityRow:
    hub: str
    instance_id: str
    state: str | None
    last_modified: float
    lock_owner: str | None
    critical_section: str | None


INSTANCE_COLUMNS = (
    "hub, instance_id, execution_id, name, version, status, input, output, custom_status, failure, "
    "created_at, updated_at, completed_at, scheduled_start, parent_instance_id, parent_execution_id, "
    "parent_task_id, tags"
)
ENTITY_COLUMNS = "hub, instance_id, state, last_modified, lock_owner, critical_section"
MESSAGE_COLUMNS = "id, hub, kind, target, execution_id, sender, visible_at, payload"


def copy_instance(row: InstanceRow) -> InstanceRow:
    copy = object.__new__(InstanceRow)
    copy.__dict__.update(row.__dict__)
    copy.tags = dict(row.tags)
    return copy


def copy_entity(row: EntityRow) -> EntityRow:
    copy = object.__new__(EntityRow)
    copy.__dict__.update(row.__dict__)
    return copy


def instance_from(row: sqlite3.Row | tuple) -> InstanceRow:
    values = list(row)
    values[-1] = json.loads(values[-1]) if values[-1] else {}
    return InstanceRow(*values)


def instance_values(row: InstanceRow) -> list:
    values = list(vars(row).values())
    values[-1] = json.dumps(row.tags) if row.tags else None
    return values
