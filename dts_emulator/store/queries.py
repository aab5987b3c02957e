"""The instance and entity queries, built once for both the writer's connection and the readers'.

``fetch(sql, params)`` runs a query on whichever connection the caller owns.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from .rows import ENTITY_COLUMNS, INSTANCE_COLUMNS, EntityRow, InstanceRow, instance_from

Fetch = Callable[[str, Sequence], list[sqlite3.Row]]

# ``search`` looks at the newest SEARCH_WINDOW instances of a hub only (by creation time):
# it matches text anywhere in an ID or name, which no index helps with, so it is bounded.
SEARCH_WINDOW = 10_000


def _instance_filters(
    fetch: Fetch,
    hub: str,
    statuses: Sequence[int] = (),
    created_from: float | None = None,
    created_to: float | None = None,
    completed_from: float | None = None,
    completed_to: float | None = None,
    prefix: str | None = None,
    parent: str | None = None,
    search: str | None = None,
    tag: tuple[str, str | None] | None = None,
) -> tuple[list[str], list]:
    """WHERE terms and their parameters for the filters query_instances and instance_histogram share."""
    where, params = ["hub = ?"], [hub]
    if statuses:
        where.append(f"status IN ({', '.join('?' * len(statuses))})")
        params.extend(statuses)
    for column, op, value in (
        ("created_at", ">=", created_from),
        ("created_at", "<", created_to),
        ("completed_at", ">=", completed_from),
        ("completed_at", "<", completed_to),
    ):
        if value is not None:
            where.append(f"{column} {op} ?")
            params.append(value)
    if prefix:
        where.append("substr(instance_id, 1, ?) = ?")
        params.extend([len(prefix), prefix])
    if parent is not None:
        where.append("parent_instance_id = ?")
        params.append(parent)
    if tag is not None:
        # A tag's key (and value, when given): tags are a JSON object of strings.
        where.append("EXISTS (SELECT 1 FROM json_each(instances.tags) WHERE key = ? AND (? IS NULL OR value = ?))")
        params.extend([tag[0], tag[1], tag[1]])
    if search:
        floor = fetch(
            "SELECT created_at, instance_id FROM instances WHERE hub = ? "
            "ORDER BY created_at DESC, instance_id DESC LIMIT 1 OFFSET ?", (hub, SEARCH_WINDOW - 1))
        if floor:
            where.append("(created_at, instance_id) >= (?, ?)")
            params.extend(floor[0])
        where.append("(instr(instance_id, ?) > 0 OR instr(name, ?) > 0)")
        params.extend([search, search])
    return where, params


def query_instances(
    fetch: Fetch,
    hub: str,
    after: tuple[float, str] | None = None,
    limit: int | None = None,
    newest_first: bool = False,
    by_updated: bool = False,
    **filters,
) -> list[InstanceRow]:
    """Instances ordered by (created_at, instance_id), or (updated_at, instance_id) ``by_updated``;
    ``after`` continues a page from such a pair. See _instance_filters for the filters.

    ``search`` matches a part of the instance ID or the orchestration name, among the
    hub's newest SEARCH_WINDOW instances only: older ones are not searched. ``by_updated``
    has no index: it sorts the matching instances.
    """
    where, params = _instance_filters(fetch, hub, **filters)
    column = "updated_at" if by_updated else "created_at"
    if after is not None:
        where.append(f"({column}, instance_id) {'<' if newest_first else '>'} (?, ?)")
        params.extend(after)
    order = f"{column} DESC, instance_id DESC" if newest_first else f"{column}, instance_id"
    if filters.get("parent") is not None:
        # '+' keeps SQLite off the created_at index (a scan of the hub): the parent index finds the few children.
        order = "+" + order
    sql = f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE {' AND '.join(where)} ORDER BY {order}"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [instance_from(r) for r in fetch(sql, params)]


def instance_histogram(fetch: Fetch, hub: str, buckets: int, **filters) -> dict:
    """Starts and completions of the matching instances in ``buckets`` equal spans of time.

    The span runs from the first start to the last start or completion (or the filter's
    created_from/created_to where given). Two grouped scans; no rows come back.
    """
    where, params = _instance_filters(fetch, hub, **filters)
    clause = " AND ".join(where)
    low, high_created, high_completed, total = fetch(
        f"SELECT min(created_at), max(created_at), max(completed_at), count(*) FROM instances WHERE {clause}",
        params)[0]
    low = filters.get("created_from") if filters.get("created_from") is not None else low
    high = filters.get("created_to") if filters.get("created_to") is not None else max(
        v for v in (high_created, high_completed, low) if v is not None) if low is not None else None
    if low is None or high is None or not total:
        return {"from": None, "to": None, "bucketSeconds": None, "started": [0] * buckets,
                "completed": [0] * buckets, "total": 0}
    width = max((high - low) / buckets, 0.001)
    counts = {}
    for column in ("created_at", "completed_at"):
        rows = fetch(f"SELECT min(CAST((({column}) - ?) / ? AS INTEGER), ?), count(*) FROM instances "
                     f"WHERE {clause} AND {column} IS NOT NULL AND {column} >= ? AND {column} <= ? "
                     "GROUP BY 1", [low, width, buckets - 1, *params, low, high])
        series = [0] * buckets
        for bucket, n in rows:
            series[bucket] += n
        counts[column] = series
    return {"from": low, "to": high, "bucketSeconds": width, "started": counts["created_at"],
            "completed": counts["completed_at"], "total": total}


def query_entities(
    fetch: Fetch,
    hub: str,
    prefix: str | None = None,
    modified_from: float | None = None,
    modified_to: float | None = None,
    after: str | None = None,
    limit: int | None = None,
    locked_only: bool = False,
    name_or_key: str | None = None,
) -> list[EntityRow]:
    """Entities ordered by ID; ``name_or_key`` matches a name prefix or a key prefix."""
    where, params = ["hub = ?"], [hub]
    if prefix:
        where.append("substr(instance_id, 1, ?) = ?")
        params.extend([len(prefix), prefix])
    if name_or_key:
        pattern = name_or_key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append("(instance_id LIKE ? ESCAPE '\\' OR instance_id LIKE ? ESCAPE '\\')")
        params.extend([f"@{pattern.lower()}%", f"@%@{pattern}%"])
    if modified_from is not None:
        where.append("last_modified >= ?")
        params.append(modified_from)
    if modified_to is not None:
        where.append("last_modified < ?")
        params.append(modified_to)
    if after is not None:
        where.append("instance_id > ?")
        params.append(after)
    if locked_only:
        where.append("lock_owner IS NOT NULL")
    sql = f"SELECT {ENTITY_COLUMNS} FROM entities WHERE {' AND '.join(where)} ORDER BY instance_id"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [EntityRow(*r) for r in fetch(sql, params)]


GET_INSTANCE = f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE hub = ? AND instance_id = ?"
GET_ENTITY = f"SELECT {ENTITY_COLUMNS} FROM entities WHERE hub = ? AND instance_id = ?"
HISTORY = "SELECT event FROM history WHERE hub = ? AND instance_id = ? ORDER BY seq"
