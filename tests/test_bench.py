"""The benchmark harness runs end to end on tiny sizes and refuses wrong answers."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest
from durabletask import client as dt_client

from tests.helpers import ROOT, Process


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


def test_the_writes_skipped_device_serves_but_stores_nothing(tmp_path):
    data = tmp_path / "skipped.db"
    device = Process([sys.executable, "bench/emulator_without_writes.py", "--port", "0", "--dashboard-port", "0",
                      "--log-level", "info", "--data", str(data)])
    try:
        port = device.wait_for_line(r"gRPC endpoint: http://[\d.]+:(\d+)").group(1)
        client = dt_client.TaskHubGrpcClient(host_address=f"127.0.0.1:{port}")
        instance_id = client.schedule_new_orchestration("counter_workflow", input="k")
        assert client.get_orchestration_state(instance_id).name == "counter_workflow"  # served from memory
        client.close()
    finally:
        assert device.stop() == 0, device.output
    with sqlite3.connect(data) as db:  # the schema is real; no row reached it
        assert db.execute("SELECT count(*) FROM instances").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM messages").fetchone() == (0,)


def test_spread_pairs_each_round_with_the_baseline_of_that_round():
    sys.path.insert(0, str(ROOT))
    from bench import run

    def rounds(*figures):
        return [run.Result("x", {"orchestrations/s": o, "signals/s": s}) for o, s in figures]

    runs = {"emulator": rounds((100, 450), (150, 400)), run.BASELINE: rounds((125, 500), (120, 500))}
    assert run.spread(runs) == "- emulator: orchestrations/s 0.80-1.25x, signals/s 0.80-0.90x"
