"""Build the engine (kept for callers of ``create_backend``; the parts are wired in ``backend.py``)."""

from __future__ import annotations

from .backend import Backend
from .store import Store


def create_backend(store: Store, hubs: list[str], **options) -> Backend:
    return Backend(store, hubs, **options)
