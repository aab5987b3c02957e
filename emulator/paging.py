"""Continuation tokens for instance lists, shared by the gRPC service and the dashboard."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from .store import InstanceRow

T = TypeVar("T")


def instance_token(row: InstanceRow) -> str:
    """Where the next page starts: after this row in (created_at, instance_id) order."""
    return f"{row.created_at!r}|{row.instance_id}"


def parse_instance_token(token: str) -> tuple[float, str]:
    created, sep, instance_id = token.partition("|")
    try:
        if not sep:
            raise ValueError
        return float(created), instance_id
    except ValueError:
        raise ValueError(f"continuation token '{token}' was not issued by this emulator") from None


def split_page(rows: Sequence[T], limit: int) -> tuple[list[T], bool]:
    """Rows fetched with ``limit + 1``: the page, and whether more follow."""
    return list(rows[:limit]), len(rows) > limit
