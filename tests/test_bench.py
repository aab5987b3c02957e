"""The benchmark harness runs end to end on tiny sizes and refuses wrong answers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT


def test_quick_bench_writes_table_json_and_chart(tmp_path):
    result = subprocess.run([sys.executable, "bench/run.py", "--quick", "--no-readme", "--output", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    data = json.loads((tmp_path / "latest.json").read_text())
    assert [r["backend"] for r in data["results"]] == [
        "emulator (SQLite, default)", "emulator --in-memory", "emulator, SQLite writes skipped (measurement only)",
        "in-memory backend (durabletask.testing)"]
    for r in data["results"]:
        assert r["orchestrations/s"] > 0 and r["signals/s"] > 0 and r["call p50 ms"] > 0
        assert r["backend CPU ms/orchestration"] > 0 and r["backend CPU ms/signal"] > 0
    assert "| emulator (SQLite, default) |" in (tmp_path / "latest.md").read_text()
    assert (tmp_path / "chart.png").stat().st_size > 10_000


def test_a_wrong_answer_fails_the_run():
    sys.path.insert(0, str(ROOT))
    from bench import run

    class LyingClient:
        def schedule_new_orchestration(self, name, input):
            return input

        def wait_for_orchestration_completion(self, instance_id, timeout):
            return type("State", (), {"serialized_output": '"Counter \'x\' final value: 13"'})()

    with pytest.raises(run.WrongResult):
        run.workload_orchestrations(LyingClient(), 3)
