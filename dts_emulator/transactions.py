"""One atomic change: a SQLite transaction, with work settled before it commits and effects after.

The engine is owned by one asyncio event loop (see ``server.py``): every change runs on
that loop, to completion, inside :meth:`Transactions.tx`, which is one SQLite
transaction. So there is no engine lock, and nothing can observe half a change.
In-memory effects (waking worker streams and waiting clients, scheduling due messages)
run only after the commit; a failed commit discards them, and the store undoes its own
memory, so memory never runs ahead of the disk.

Work to settle before the commit (an entity's inbox examined once, however many messages
the change queued for it) is keyed, so each key runs once, in the order first queued.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from .store import Store


class _Tx:
    """``Transactions.tx()``: a plain context manager, as every change goes through it."""

    __slots__ = ("owner", "outer", "transaction")

    def __init__(self, owner: Transactions):
        self.owner = owner

    def __enter__(self) -> None:
        owner = self.owner
        self.outer = not owner._depth
        self.transaction = owner.store.transaction()
        self.transaction.__enter__()
        owner._depth += 1

    def __exit__(self, kind, exc, tb) -> None:
        try:
            if kind is None and self.outer:
                try:
                    self.owner._settle()
                except BaseException as failure:
                    self.transaction.__exit__(type(failure), failure, failure.__traceback__)
                    raise
            self.transaction.__exit__(kind, exc, tb)  # commits, or rolls back after a failure
        except BaseException:
            self._end(committed=False)
            raise
        self._end(committed=kind is None)

    def _end(self, committed: bool) -> None:
        owner = self.owner
        owner._depth -= 1
        if not self.outer:
            return
        effects, owner._effects = owner._effects, []
        if not committed:
            owner._unsettled.clear()
            return
        for effect in effects:
            effect()


class Transactions:
    def __init__(self, store: Store):
        self.store = store
        self._depth = 0
        self._effects: list[Callable[[], None]] = []
        self._unsettled: dict[Hashable, Callable[[], None]] = {}

    def tx(self) -> _Tx:
        """One atomic change; effects run after the commit, or not at all."""
        return _Tx(self)

    def after_commit(self, effect: Callable[[], None]) -> None:
        self._effects.append(effect)

    def before_commit(self, key: Hashable, work: Callable[[], None]) -> None:
        """Run ``work`` in this change before it commits, once per ``key`` (queued outside one: the next)."""
        self._unsettled.setdefault(key, work)

    def _settle(self) -> None:
        while self._unsettled:
            key = next(iter(self._unsettled))
            self._unsettled.pop(key)()
