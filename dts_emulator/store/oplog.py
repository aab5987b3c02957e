"""The entity operation log's table: what each operation did, newest rows kept per entity.

Rows are written in the transaction that applies the entity's batch, so the log never
says more or less than the entity's state. ``seq`` orders the rows (one counter for the
whole file); each entity keeps its newest ``limit`` rows, and its rows go when its own
row does (see Store.put_entity). Texts arrive already capped (see dts_emulator/entity_log.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

CREATE = """CREATE TABLE entity_ops (
    hub TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    operation TEXT NOT NULL,
    input TEXT,
    input_size INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    result TEXT,
    result_size INTEGER NOT NULL,
    error_type TEXT,
    error_message TEXT,
    sender_kind TEXT NOT NULL,
    sender TEXT,
    sent_at REAL,
    applied_at REAL NOT NULL,
    state_before TEXT,
    state_after TEXT,
    state_size INTEGER NOT NULL,
    batch_size INTEGER NOT NULL,
    PRIMARY KEY (hub, entity_id, seq)
) WITHOUT ROWID"""

# Which entity started an instance (lineage the dashboard shows): one row per instance,
# written where the entity's batch starts it, gone with the instance.
CREATE_STARTS = """CREATE TABLE entity_starts (
    hub TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    PRIMARY KEY (hub, instance_id)
) WITHOUT ROWID"""
ADD_START = "INSERT OR REPLACE INTO entity_starts (hub, instance_id, entity_id) VALUES (?, ?, ?)"
DELETE_START = "DELETE FROM entity_starts WHERE hub = ? AND instance_id = ?"
STARTED_BY = "SELECT entity_id FROM entity_starts WHERE hub = ? AND instance_id = ?"

DEFAULT_LIMIT = 100
"""Operations kept per entity unless ``--entity-log`` says otherwise (0: no log)."""


class OperationRow(NamedTuple):
    hub: str
    entity_id: str
    seq: int
    operation: str
    input: str | None
    input_size: int
    failed: bool
    result: str | None
    result_size: int
    error_type: str | None
    error_message: str | None
    sender_kind: str  # client, orchestration, entity or lock
    sender: str | None
    sent_at: float | None
    applied_at: float
    state_before: str | None
    state_after: str | None
    state_size: int
    batch_size: int


COLUMNS = ", ".join(OperationRow._fields)
INSERT = f"INSERT INTO entity_ops ({COLUMNS}) VALUES {{}}"
PLACEHOLDER = "(" + ", ".join("?" * len(OperationRow._fields)) + ")"
# The row ``limit`` places below the newest, and everything older, goes.
TRIM = ("DELETE FROM entity_ops WHERE hub = ?1 AND entity_id = ?2 AND seq <= "
        "(SELECT seq FROM entity_ops WHERE hub = ?1 AND entity_id = ?2 ORDER BY seq DESC LIMIT 1 OFFSET ?3)")
DELETE = "DELETE FROM entity_ops WHERE hub = ? AND entity_id = ?"
LAST_SEQ = "SELECT max(seq) FROM entity_ops"

Fetch = Callable[[str, Sequence], list]


def page(fetch: Fetch, hub: str, entity_id: str, before: int | None, limit: int) -> list[OperationRow]:
    """The entity's rows newest first, older than ``before`` (a seq) when given."""
    sql = f"SELECT {COLUMNS} FROM entity_ops WHERE hub = ? AND entity_id = ?"
    params: list = [hub, entity_id]
    if before is not None:
        sql += " AND seq < ?"
        params.append(before)
    rows = fetch(sql + " ORDER BY seq DESC LIMIT ?", [*params, limit])
    return [OperationRow(*r) for r in rows]


def started_by(fetch: Fetch, hub: str, instance_id: str) -> str | None:
    rows = fetch(STARTED_BY, [hub, instance_id])
    return rows[0][0] if rows else None


def last_failures(fetch: Fetch, hub: str, entity_ids: Sequence[str]) -> dict[str, float]:
    """{entity ID: when its newest kept failed operation was applied} for those that have one."""
    if not entity_ids:
        return {}
    marks = ", ".join("?" * len(entity_ids))
    rows = fetch(f"SELECT entity_id, max(applied_at) FROM entity_ops WHERE hub = ? AND entity_id IN ({marks}) "
                 "AND failed GROUP BY entity_id", [hub, *entity_ids])
    return {entity_id: at for entity_id, at in rows}
