"""The writer's side of SQLite: a transaction's writes sent as few statements as possible.

Every call into SQLite lets go of the GIL and takes it back, which under load costs more
than the statement itself. So writes wait in :class:`WriteQueue` until the transaction
commits (or a read inside it needs them); consecutive rows for the same statement become
one multi-row statement, and a transaction that comes to one statement needs no BEGIN/COMMIT.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import StorageError


class WriteQueue:
    """Queued statements: (template, row placeholder, rows); ``{}`` in a template takes the rows."""

    # Rows per multi-row statement: well under SQLite's limit on bound variables.
    ROWS_PER_STATEMENT = 200

    def __init__(self):
        self._statements: list[tuple[str, str, list]] = []

    def __bool__(self) -> bool:
        return bool(self._statements)

    def add(self, template: str, placeholder: str, rows: Sequence[Sequence]) -> None:
        """Queue rows for ``template``; without a placeholder it runs once per row of parameters."""
        last = self._statements[-1] if self._statements else None
        if placeholder and last is not None and last[0] == template and len(last[2]) < self.ROWS_PER_STATEMENT:
            last[2].extend(rows)
        else:
            self._statements.append((template, placeholder, list(rows)))

    def take(self) -> list[tuple[str, list]]:
        """The queued statements as (sql, parameters), leaving the queue empty."""
        statements, self._statements = self._statements, []
        out = []
        for template, placeholder, rows in statements:
            if not placeholder:
                out.extend((template, row) for row in rows)
                continue
            for i in range(0, len(rows), self.ROWS_PER_STATEMENT):
                chunk = rows[i:i + self.ROWS_PER_STATEMENT]
                if len(chunk) == 1:
                    out.append((template.replace("{}", placeholder), chunk[0]))
                    continue
                sql = template.replace("{}", ", ".join([placeholder] * len(chunk)))
                out.append((sql, [value for row in chunk for value in row]))
        return out

    def clear(self) -> None:
        self._statements.clear()


class Writer:
    """The store's one writing connection; every SQLite error on the way out is a StorageError."""

    def __init__(self, db: sqlite3.Connection, path: Path | None, committed: Callable[[], None] | None = None,
                 still_there: Callable[[], None] | None = None):
        """``committed`` is told of each commit; ``still_there`` raises if the data file is gone (Identity.check)."""
        self.db = db
        self._still_there = still_there
        self.path = path
        self.queue = WriteQueue()
        self._begun = False  # BEGIN sent for the open transaction
        self._committed = committed
        self.commits = 0  # transactions that wrote and committed (the health report compares it)

    def add(self, template: str, placeholder: str, rows: Sequence[Sequence]) -> None:
        self.queue.add(template, placeholder, rows)

    def send(self, last: bool = False) -> None:
        """Send queued writes into the open transaction; ``last``: nothing follows them."""
        statements = self.queue.take()
        if not statements:
            return
        try:
            if not self._begun:
                self._roll_back()  # one left open by a ROLLBACK that failed: its writes were never committed
                if last and len(statements) == 1:
                    self.db.execute(*statements[0])  # one statement is a transaction of its own
                    return
                self.db.execute("BEGIN")
                self._begun = True
            for sql, params in statements:
                self.db.execute(sql, params)
        except sqlite3.Error as exc:
            raise StorageError(self.path, exc) from exc

    def commit(self) -> None:
        wrote = bool(self.queue) or self._begun
        if wrote and self._still_there is not None:
            self._still_there()  # raises before anything is written or acknowledged
        self.send(last=True)
        if self._begun:
            try:
                self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StorageError(self.path, exc) from exc
            self._begun = False
        if wrote:
            self.commits += 1
        if wrote and self._committed is not None:
            self._committed()

    def abort(self) -> None:
        """Drop the transaction: queued writes, and whatever SQLite still holds of it.

        SQLite may have rolled back by itself already (disk full, I/O error); then there
        is nothing to roll back, and ROLLBACK would only fail.
        """
        self.queue.clear()
        self._begun = False
        self._roll_back()

    def _roll_back(self) -> None:
        """ROLLBACK while SQLite holds a transaction (a second try after a failed one; see send())."""
        for attempt in (1, 2):
            if not self.db.in_transaction:
                return
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error as exc:
                if attempt == 2 and self.db.in_transaction:
                    raise StorageError(self.path, exc) from exc
