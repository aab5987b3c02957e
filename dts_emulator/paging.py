"""Continuation tokens for instance lists, shared by the gRPC service and the dashboard."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

from .store import InstanceRow

T = TypeVar("T")


def instance_token(row: InstanceRow) -> str:
    """Where the next page starts: after this row in (created_at, instance_id) order."""
    return f"{row.created_at!r}|{row.instance_id}"


def parse_instance_token(token: str) -> tuple[float, str]:
    """The (created_at, instance_id) an issued token holds; ValueError for any other text.

    An issued token has a finite time (a row's) and a non-empty instance ID: ``nan|x``,
    ``inf|`` or ``1e400|x`` parse as floats but were never issued, and would page nowhere.
    """
    created, sep, instance_id = token.partition("|")
    try:
        when = float(created)
        if not sep or not instance_id or not math.isfinite(when):
            raise ValueError
        return when, instance_id
    except ValueError:
        raise ValueError(f"continuation token '{token}' was not issued by this emulator") from None


def split_page(rows: Sequence[T], limit: int) -> tuple[list[T], bool]:
    """Rows fetched with ``limit + 1``: the page, and whether more follow."""
    return list(rows[:limit]), len(rows) > limit
