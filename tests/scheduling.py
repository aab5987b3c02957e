"""How pytest-xdist shares the tests between its workers (``python dev.py test`` starts them).

Each test is a unit of its own, so the longest (conftest.py puts the slow ones first) start at
once on different workers, except in a module that defines a module-scoped fixture (a venv with
the package installed, an emulator process with a browser): its tests stay on one worker, which
builds the fixture once instead of once per worker. (pytest-xdist 3.8's ``--dist loadgroup``
cannot be used for this under pytest 9.2: it renames items through an attribute pytest no
longer reads, so every test stays a group of its own.)
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from xdist.scheduler import LoadScopeScheduling

MODULE_FIXTURE = re.compile(r"""@pytest\.fixture\([^)]*scope\s*=\s*["']module["']""")


class ModuleFixtureScheduling(LoadScopeScheduling):
    """xdist's scope scheduler, with a scope per test except where a module fixture binds a module's tests."""

    def __init__(self, config, log=None):
        super().__init__(config, log)
        self.root = Path(config.rootpath)

    def _split_scope(self, nodeid: str) -> str:
        module = nodeid.split("::", 1)[0]
        return module if defines_module_fixture(self.root / module) else nodeid


@functools.cache
def defines_module_fixture(path: Path) -> bool:
    try:
        return bool(MODULE_FIXTURE.search(path.read_text(encoding="utf-8")))
    except OSError:
        return False
