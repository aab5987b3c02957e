"""``Store.transaction()`` and the undo log that keeps memory in step with the disk.

Every in-memory change the store makes inside a transaction (caches, message mirror,
lock index, kept counts) records how to reverse itself. If the transaction ends in an
exception, or its commit fails for any reason (a statement, COMMIT itself, ROLLBACK),
the memory is reversed first and whatever SQLite still holds is rolled back after, so
the store serves exactly what it served before, and what the disk holds.
"""

from __future__ import annotations

from collections.abc import Callable


class UndoLog:
    """How to reverse the open transaction's memory changes, newest last."""

    __slots__ = ("depth", "_steps")

    def __init__(self):
        self.depth = 0  # nested transactions open; changes are recorded while it is above 0
        self._steps: list[Callable[[], None]] = []

    def remember(self, step: Callable[[], None]) -> None:
        if self.depth:
            self._steps.append(step)

    def undo(self) -> None:
        """Run every step, newest first (plain dict and set changes: they do not fail)."""
        steps, self._steps = self._steps, []
        for step in reversed(steps):
            step()

    def forget(self) -> None:
        self._steps.clear()


class Transaction:
    """A plain context manager (not a generator), as it runs several times per work item.

    ``owner`` has ``_lock`` (an RLock), ``_undo`` (an UndoLog) and ``_writer`` (a Writer).
    """

    __slots__ = ("owner", "outer")

    def __init__(self, owner):
        self.owner = owner

    def __enter__(self) -> None:
        owner = self.owner
        owner._lock.acquire()
        self.outer = not owner._undo.depth
        owner._undo.depth += 1

    def __exit__(self, kind, exc, tb) -> None:
        owner = self.owner
        try:
            owner._undo.depth -= 1
            if not self.outer:
                return
            if kind is not None:
                self._abort()
                return
            try:
                owner._writer.commit()
            except BaseException:
                self._abort()
                raise
            owner._undo.forget()
        finally:
            owner._lock.release()

    def _abort(self) -> None:
        try:
            self.owner._undo.undo()
        finally:
            self.owner._writer.abort()
