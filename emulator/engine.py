"""Assemble the engine: the core (``backend.py``) with the entity rules and work-item policy plugged in.

The core does not import the modules that build on it; this is where they meet.
"""

from __future__ import annotations

from . import activities, entities, orchestrations
from .backend import Backend
from .store import ACTIVITY, ENTITY, ORCHESTRATION, Store
from .workitems import ENTITY_RECENT, name_of


def create_backend(store: Store, hubs: list[str], **options) -> Backend:
    give_up = {ORCHESTRATION: orchestrations.fail, ACTIVITY: activities.fail, ENTITY: entities.fail}
    return Backend(store, hubs, entity_rules=entities, namer=name_of, give_up=give_up,
                   remember_leases={ENTITY: ENTITY_RECENT}, **options)
