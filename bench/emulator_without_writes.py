"""The built-in emulator with its SQLite writes skipped: a measuring device, not a way to run it.

Usage: python bench/emulator_without_writes.py [emulator options]

Everything runs as in ``python -m dts_emulator`` (same engine, same in-memory caches and
queues) except that the rows each transaction would write are dropped instead of sent to
SQLite, so nothing is stored and no commit happens. Set beside the real emulator, it shows
what persistence costs. Correct only while every row the workload touches stays in the
store's caches (the benchmark sizes do), and the benchmark still checks every answer.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dts_emulator import store  # noqa: E402
from dts_emulator.cli import main  # noqa: E402

_open = store.Store.__init__


def _open_then_skip_writes(self: store.Store, *args, **kwargs) -> None:
    _open(self, *args, **kwargs)  # creates the schema for real; only what follows is skipped
    writer = self._writer
    writer.send = lambda last=False: writer.queue.clear()
    writer.commit = writer.queue.clear


store.Store.__init__ = _open_then_skip_writes

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
