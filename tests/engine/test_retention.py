"""--retention: finished instances are purged after the period, on a timer, in bounded batches."""

from __future__ import annotations

import pytest
from durabletask.internal import orchestrator_service_pb2 as pb

from dts_emulator import control
from dts_emulator.retention import parse_duration
from dts_emulator.testing import Emulator
from tests.helpers import wait_until

HOUR = 3600.0


def finished(emu: Emulator, *ids: str) -> None:
    """Instances that ended now (terminated before any worker ran them)."""
    def make():
        for instance_id in ids:
            emu.backend.create_instance("default", instance_id, "orch")
            control.terminate(emu.backend, "default", instance_id, None, False)
    emu.on_loop(make)


def exists(emu: Emulator, instance_id: str) -> bool:
    return emu.on_loop(lambda: emu.backend.instance("default", instance_id)) is not None


def test_finished_instances_go_after_the_period_and_not_before():
    with Emulator(retention=HOUR, retention_interval=0.02) as emu:
        retention = emu.server.retention
        finished(emu, "old")
        emu.on_loop(lambda: emu.backend.create_instance("default", "running", "orch"))
        seen = emu.on_loop(lambda: retention.rounds)
        wait_until(lambda: emu.on_loop(lambda: retention.rounds) >= seen + 3, message="three rounds")
        assert exists(emu, "old"), "purged before its period was over"
        emu.advance(HOUR + 1)
        wait_until(lambda: not exists(emu, "old"), message="the finished instance purged")
        assert exists(emu, "running")
        assert emu.on_loop(lambda: emu.backend.instance("default", "running")).status == pb.ORCHESTRATION_STATUS_PENDING
        assert retention.purged == 1


def test_a_backlog_is_purged_in_bounded_batches():
    with Emulator(retention=HOUR, retention_interval=HOUR, retention_batch=2) as emu:
        ids = [f"i{n}" for n in range(5)]
        finished(emu, *ids)
        emu.advance(HOUR + 1)
        assert emu.call(emu.server.retention.run_once()) == 2
        assert sum(exists(emu, i) for i in ids) == 3
        assert emu.call(emu.server.retention.run_once()) == 2
        assert emu.call(emu.server.retention.run_once()) == 1
        assert not any(exists(emu, i) for i in ids)


def test_off_by_default():
    with Emulator() as emu:
        assert emu.server.retention is None


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("15m", 900), ("12h", 43200), ("7d", 604800)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-1h", "7w", "h"])
def test_bad_durations_say_what_is_expected(text):
    with pytest.raises(ValueError, match="positive number with s, m, h or d"):
        parse_duration(text)
