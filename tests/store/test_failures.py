"""Memory never runs ahead of disk: whatever makes a commit fail, the store serves what the disk holds.

Failures are made on purpose: a wrapper around the writer's sqlite3 connection (given to
the Store through its ``connect`` seam) that fails at COMMIT or at a statement mid-commit,
with or without SQLite having rolled back by itself; and a small filesystem filled up.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from dts_emulator.store import ACTIVITY, ENTITY, ORCHESTRATION, EntityRow, InstanceRow, StorageError, Store
from dts_emulator.store.rows import instance_from

HUB = "h"
INSTANCES = ["i0", "i1", "i2", "new"]
ENTITIES = ["@c@a", "@c@b", "@c@new"]
OWNERS = ["i0", "i1", "new"]


def instance(instance_id: str, status: int = 0, created: float = 1.0) -> InstanceRow:
    return InstanceRow(HUB, instance_id, "e1", "orch", None, status, '"in"', None, None, None, created, created,
                       None, None, None, None, None, {"k": instance_id})


class FailingConnection:
    """A sqlite3 connection that fails once, on purpose.

    ``fail_on``: "COMMIT", or "write" (the second write statement of a transaction) or
    "ROLLBACK". With ``sqlite_rolled_back`` the real connection rolls back first, as SQLite
    does by itself after a disk-full or I/O error.
    """

    def __init__(self, db: sqlite3.Connection):
        self._db = db
        self.fail_on: str | None = None
        self.sqlite_rolled_back = False
        self.also_fail_rollback = False
        self._writes = 0
        self.failed: list[str] = []

    @classmethod
    def connector(cls):
        """A ``connect`` for ``Store(connect=...)``, and the list of the connections it made."""
        made: list[FailingConnection] = []

        def connect(*args, **kwargs):
            made.append(cls(sqlite3.connect(*args, **kwargs)))
            return made[-1]

        return connect, made

    def __getattr__(self, name):
        return getattr(self._db, name)

    def execute(self, sql: str, params=()):
        if sql == "BEGIN":
            self._writes = 0
        elif sql.startswith(("INSERT", "DELETE", "UPDATE")):
            self._writes += 1
        hit = (self.fail_on == "COMMIT" and sql == "COMMIT") or (
            self.fail_on == "write" and sql.startswith(("INSERT", "DELETE")) and self._writes == 2)
        if not hit and self.also_fail_rollback and sql == "ROLLBACK" and self.failed:
            self.also_fail_rollback = False
            self.failed.append(sql)
            raise sqlite3.OperationalError("injected failure of ROLLBACK")
        if hit:
            self.fail_on = None
            self.failed.append(sql)
            if self.sqlite_rolled_back:
                self._db.execute("ROLLBACK")
            raise sqlite3.OperationalError("injected failure: disk I/O error")
        return self._db.execute(sql, params)


def fill(store: Store) -> None:
    """Committed state touching every structure the store keeps in memory."""
    with store.transaction():
        for n, instance_id in enumerate(INSTANCES[:3]):
            store.add_instance(instance(instance_id, status=n, created=float(n)))
            store.append_history(HUB, instance_id, [f"{instance_id}-e0".encode()])
        store.add_message(HUB, ORCHESTRATION, "i0", b"m0", 0.0)
        store.add_message(HUB, ACTIVITY, "i1", b"a0", 0.0)
        store.add_message(HUB, ENTITY, "@c@a", b"s0", 0.0, sender="i0")
        store.put_entity(EntityRow(HUB, "@c@a", "1", 1.0, "i0", "cs0"))
        store.put_entity(EntityRow(HUB, "@c@b", "2", 1.0, None, None))


def change_everything(store: Store) -> list[int]:
    """One transaction's worth of changes to every in-memory structure; returns the message IDs it made."""
    store.add_instance(instance("new", status=0, created=9.0))
    changed = store.get_instance(HUB, "i1")
    changed.status = 3
    store.put_instance(changed)
    store.append_history(HUB, "i0", [b"i0-e1", b"i0-e2"])
    store.delete_instance(HUB, "i2")
    ids = [store.add_message(HUB, ORCHESTRATION, "new", b"m1", 0.0),
           store.add_message(HUB, ENTITY, "@c@new", b"s1", 0.0, sender="new")]
    store.delete_messages([m.id for m in store.messages_for(HUB, ORCHESTRATION, "i0")])
    store.put_entity(EntityRow(HUB, "@c@new", None, 2.0, "new", "cs1"))
    store.put_entity(EntityRow(HUB, "@c@a", "1", 2.0, "i1", "cs2"))  # the lock moves to another owner
    store.put_entity(EntityRow(HUB, "@c@b", None, 2.0, None, None))  # no state, no lock: the row goes
    return ids


def served(store: Store) -> dict:
    """Everything the store serves, through its public methods (caches, mirror, lock index, counts)."""
    targets = [(ORCHESTRATION, i) for i in INSTANCES] + [(ACTIVITY, i) for i in INSTANCES] + [
        (ENTITY, e) for e in ENTITIES]
    messages = {t: store.messages_for(HUB, *t) for t in targets}
    return {
        "instances": {i: store.get_instance(HUB, i) for i in INSTANCES},
        "histories": {i: store.history(HUB, i) for i in INSTANCES},
        "entities": {e: store.get_entity(HUB, e) for e in ENTITIES},
        "messages": messages,
        "by_id": {m.id: store.get_message(m.id) for ms in messages.values() for m in ms},
        "counts_per_target": {t: store.count_messages(HUB, *t) for t in targets},
        "targets": sorted(store.pending_targets()),
        "activities": store.activity_messages(),
        "locks": {o: store.locks_held_by(HUB, o) for o in OWNERS},
        "statuses": store.count_instances_by_status(HUB),
        "entity_count": store.count_entities(HUB),
        "queried": store.query_instances(HUB),
        "queried_entities": store.query_entities(HUB),
    }


def on_disk(path: Path) -> dict:
    """Every row in the file, read by a connection of its own (never the store's caches)."""
    db = sqlite3.connect(path)
    try:
        return {table: db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
                for table in ("instances", "history", "messages", "entities")}
    finally:
        db.close()


def assert_memory_equals_disk(store: Store, path: Path) -> None:
    """What the store serves from memory is what a separate connection finds in the file."""
    disk, memory = on_disk(path), served(store)
    assert {i: r for i, r in memory["instances"].items() if r} == {
        r[1]: instance_from(r) for r in disk["instances"]}
    assert {i: h for i, h in memory["histories"].items() if h} == {
        i: [r[3] for r in disk["history"] if r[1] == i] for i in {r[1] for r in disk["history"]}}
    assert {e: r for e, r in memory["entities"].items() if r} == {r[1]: EntityRow(*r) for r in disk["entities"]}
    assert sorted((m.id, m.kind, m.target, m.payload) for ms in memory["messages"].values() for m in ms) == sorted(
        (r[0], r[2], r[3], r[7]) for r in disk["messages"])
    assert sum(memory["statuses"].values()) == len(disk["instances"])
    assert memory["entity_count"] == len(disk["entities"])


@pytest.fixture
def failing(tmp_path):
    connect, conns = FailingConnection.connector()
    path = tmp_path / "f.db"
    store = Store(path, connect=connect)
    fill(store)
    served(store)  # the caches hold every row before the failure
    yield store, conns[0], path
    store.close()


@pytest.mark.parametrize("fail_on, sqlite_rolled_back, also_fail_rollback", [
    ("COMMIT", False, False),
    ("COMMIT", True, False),  # SQLite rolled back by itself: ROLLBACK would fail
    ("write", False, False),
    ("write", True, False),
    ("write", False, True),  # and the first ROLLBACK fails too
])
def test_a_failed_commit_leaves_memory_and_disk_as_before(failing, fail_on, sqlite_rolled_back, also_fail_rollback):
    store, conn, path = failing
    memory_before, disk_before = served(store), on_disk(path)
    conn.fail_on, conn.sqlite_rolled_back, conn.also_fail_rollback = fail_on, sqlite_rolled_back, also_fail_rollback
    with pytest.raises(StorageError) as failure, store.transaction():
        failed_ids = change_everything(store)
        assert store.count_instances_by_status(HUB) != memory_before["statuses"]  # memory had changed
    assert conn.failed[0] == ("COMMIT" if fail_on == "COMMIT" else conn.failed[0])
    assert conn.failed and (conn.failed[-1] == "ROLLBACK") == also_fail_rollback
    assert str(path) in str(failure.value) and "injected failure" in str(failure.value)
    assert "\n" not in str(failure.value)
    assert served(store) == memory_before
    assert on_disk(path) == disk_before
    assert_memory_equals_disk(store, path)

    with store.transaction():  # the connection works afterwards, and the failed IDs were given back
        again = change_everything(store)
    assert again == failed_ids
    assert_memory_equals_disk(store, path)


def test_a_failure_outside_a_transaction_leaves_nothing_either(failing):
    store, conn, path = failing
    memory_before, disk_before = served(store), on_disk(path)
    conn.fail_on, conn.sqlite_rolled_back = "write", True
    with pytest.raises(StorageError):
        store.delete_instance(HUB, "i0")  # a write of its own: instance, history and messages together
    assert served(store) == memory_before and on_disk(path) == disk_before


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs of its own, so that filling it up harms nothing else."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root; the connection wrapper tests cover the logic")
    where = tmp_path / "small"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (no privilege in this container?): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill_up(where: Path) -> Path:
    filler = where / "filler"
    chunk = b"\0" * 4096
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_a_full_disk_fails_the_commit_cleanly_and_loses_nothing(small_disk):
    path = small_disk / "full.db"
    store = Store(path)
    try:
        fill(store)
        acknowledged = []
        for n in range(20):
            with store.transaction():
                acknowledged.append(store.add_message(HUB, ENTITY, "@c@a", f"ack{n}".encode(), 0.0))
        served(store)
        memory_before, disk_before = served(store), on_disk(path)
        filler = fill_up(small_disk)
        stats = os.statvfs(small_disk)
        assert stats.f_bavail * stats.f_frsize < 64 * 1024  # the precondition: the disk is full

        with pytest.raises(StorageError) as failure, store.transaction():
            change_everything(store)
            store.add_message(HUB, ENTITY, "@c@a", os.urandom(512 * 1024), 0.0)
        assert failure.value.full, failure.value
        assert str(path) in str(failure.value) and "full" in str(failure.value)
        assert served(store) == memory_before
        assert on_disk(path) == disk_before
        assert_memory_equals_disk(store, path)

        filler.unlink()
        with store.transaction():
            after = store.add_message(HUB, ENTITY, "@c@a", b"after", 0.0)
        assert_memory_equals_disk(store, path)
    finally:
        store.close()
    reopened = Store(path)
    try:
        assert [m.id for m in reopened.messages_for(HUB, ENTITY, "@c@a")][-21:] == [*acknowledged, after]
        assert_memory_equals_disk(reopened, path)
    finally:
        reopened.close()
