"""Task hubs created and deleted over gRPC (``CreateTaskHub``/``DeleteTaskHub``), with ``--allow-hub-management``.

The official emulator serves the hubs named at start-up (``DTS_TASK_HUB_NAMES``) and
answers NOT_FOUND for any other; so does this one unless the flag is given. A hub
created here is served until the emulator stops; its data stays in the file, and it is
served again after a restart when it is named at start-up.
"""

from __future__ import annotations

import logging
import re

from .backend import Backend, OverLimit

log = logging.getLogger("dts_emulator.hubs")

# Hubs at once (each costs a few dictionary entries, and every dashboard overview counts them all).
MAX_HUBS = 100
# Letters, digits, '-' and '_': a hub name goes into dashboard paths and log lines as it is.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def check_name(name: str) -> str | None:
    if not _NAME.fullmatch(name):
        return (f"task hub name '{name[:80]}' is not valid: 1 to 64 letters, digits, '-' or '_', "
                "starting with a letter or digit")
    return None


def create(backend: Backend, name: str) -> bool:
    """Serve a new hub; False when it is already served."""
    if name in backend.hubs:
        return False
    if len(backend.hubs) >= MAX_HUBS:
        raise OverLimit(f"the emulator serves {len(backend.hubs)} task hubs, as many as it admits; delete one first")
    backend.hubs.append(name)
    log.info("task hub %s created", name)
    return True


def delete(backend: Backend, name: str, keep_serving: bool) -> None:
    """Delete a hub's data; a hub not named at start-up is no longer served either."""
    backend.delete_hub(name)
    if not keep_serving:
        backend.hubs.remove(name)
        log.info("task hub %s deleted", name)
