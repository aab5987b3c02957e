"""store.reads(): the dashboard's and query calls' reader, on a connection of its own for a data file."""

from __future__ import annotations

import threading

import pytest

from dts_emulator.store import ENTITY, SEARCH_WINDOW, EntityRow, InstanceRow, Store


def instance(instance_id: str, created: float = 1.0, status: int = 0, name: str = "orch") -> InstanceRow:
    return InstanceRow("h", instance_id, "e1", name, None, status, None, None, None, None, created, created,
                       None, None, None, None, None, {})


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "r.db")
    yield s
    s.close()


def test_a_reader_sees_what_was_committed(store):
    reads = store.reads()
    assert not reads.same_thread
    with store.transaction():
        store.add_instance(instance("a"))
        store.append_history("h", "a", [b"e0", b"e1"])
        store.put_entity(EntityRow("h", "@c@k", "5", 1.0, None, None))
        message_id = store.add_message("h", ENTITY, "@c@k", b"op", 0.0)
    assert reads.get_instance("h", "a") == instance("a")
    assert reads.query_instances("h", newest_first=True, limit=5) == [instance("a")]
    assert reads.history("h", "a") == [b"e0", b"e1"]
    assert reads.get_entity("h", "@c@k") == EntityRow("h", "@c@k", "5", 1.0, None, None)
    assert [r.instance_id for r in reads.query_entities("h", name_or_key="c")] == ["@c@k"]
    assert [m.id for m in reads.messages_for("h", ENTITY, "@c@k")] == [message_id]
    assert reads.count_messages("h", ENTITY, "@c@k") == 1
    assert reads.count_instances_by_status("h") == {0: 1} and reads.count_entities("h") == 1


def test_a_reader_never_sees_uncommitted_or_rolled_back_writes(store):
    reads = store.reads()
    with pytest.raises(RuntimeError), store.transaction():
        store.add_instance(instance("gone"))
        store.put_entity(EntityRow("h", "@c@gone", "1", 1.0, None, None))
        assert [r.instance_id for r in store.query_instances("h")] == ["gone"]  # the writes reached SQLite
        assert reads.get_instance("h", "gone") is None and reads.query_instances("h") == []  # not committed
        raise RuntimeError("roll back")
    assert reads.get_instance("h", "gone") is None and reads.get_entity("h", "@c@gone") is None
    assert reads.query_entities("h") == [] and reads.count_entities("h") == 0


def test_a_reader_holding_a_snapshot_does_not_block_the_writer(store):
    reads = store.reads()
    store.put_instance(instance("a", status=0))
    with reads.snapshot():
        assert reads.get_instance("h", "a").status == 0  # the read transaction is open from here
        for status in (1, 2):
            with store.transaction():  # commits while the reader holds its snapshot; it would raise if blocked
                store.put_instance(instance("a", status=status))
                store.add_instance(instance(f"b{status}"))
        assert reads.get_instance("h", "a").status == 0  # still the snapshot
        assert [r.instance_id for r in reads.query_instances("h")] == ["a"]
    assert reads.get_instance("h", "a").status == 2
    assert [r.instance_id for r in reads.query_instances("h")] == ["a", "b1", "b2"]


def test_a_reader_on_another_thread_reads_while_the_writer_commits(store):
    reads = store.reads()
    seen: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                seen.append(len(reads.query_instances("h")))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for n in range(300):
            with store.transaction():
                store.add_instance(instance(f"i{n:03}", created=float(n)))
    finally:
        done.set()
        reader.join(timeout=30)
    assert not errors, errors
    assert len(seen) > 1 and seen == sorted(seen)  # read many times, never backwards
    assert len(reads.query_instances("h")) == 300


def test_an_in_memory_store_is_read_on_the_engines_thread():
    store = Store(None)
    try:
        reads = store.reads()
        assert reads.same_thread
        store.add_instance(instance("a"))
        assert reads.get_instance("h", "a") == instance("a") and reads.count_instances_by_status("h") == {0: 1}
    finally:
        store.close()


def test_search_covers_the_newest_instances_only(store):
    with store.transaction():
        store.add_instance(instance("old-match", created=0.0, name="needle"))
        for n in range(SEARCH_WINDOW):
            store.add_instance(instance(f"i{n:05}", created=1.0 + n))
        store.add_instance(instance("new-match", created=1e9, name="needle"))
    assert len(store.query_instances("h")) == SEARCH_WINDOW + 2  # the old match is outside the window
    reads = store.reads()
    assert [r.instance_id for r in reads.query_instances("h", search="needle")] == ["new-match"]
    assert [r.instance_id for r in store.query_instances("h", search="needle")] == ["new-match"]
    assert [r.instance_id for r in reads.query_instances("h", search="old-")] == []
    assert [r.instance_id for r in reads.query_instances("h", prefix="old-")] == ["old-match"]  # not a search
