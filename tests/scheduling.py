"""How the tests are ordered and shared between pytest-xdist's workers (``python dev.py test`` starts them).

Slow tests go first and each test is a unit of its own, so the longest start at once on
different workers and the short ones fill in around them. A module that defines a module-scoped
fixture (a venv with the package installed, an emulator process with a browser) keeps its order,
as its tests share state, and stays on one worker, which builds the fixture once instead of once
per worker. (pytest-xdist 3.8's ``--dist loadgroup`` cannot be used for this under pytest 9.2: it
renames items through an attribute pytest no longer reads, so every test stays a group of its own.)
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

MODULE_FIXTURE = re.compile(r"""@pytest\.fixture\([^)]*scope\s*=\s*["']module["']""")


@functools.cache
def defines_module_fixture(path: Path) -> bool:
    try:
        return bool(MODULE_FIXTURE.search(path.read_text(encoding="utf-8")))
    except OSError:
        return False


def slow_first(items) -> None:
    """Sort the slow tests first, except in modules with a module fixture (their order is theirs)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None or defines_module_fixture(Path(item.path)))


def scheduler(config, log):
    """xdist's scope scheduler, with a scope per test except where a module fixture binds a module's tests."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if defines_module_fixture(Path(config.rootpath) / module) else nodeid

    return ModuleFixtureScheduling(config, log)
