"""The benchmark harness runs end to end on tiny sizes and refuses wrong answers."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys

import pytest
from durabletask import client as dt_client

from tests.helpers import ROOT, Process, wait_until


@pytest.mark.slow
def test_quick_bench_writes_table_json_and_chart(tmp_path):
    result = subprocess.run([sys.executable, "bench/run.py", "--quick", "--workloads", "throughput", "--no-readme",
                             "--output", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    data = json.loads((tmp_path / "latest.json").read_text())
    assert [r["backend"] for r in data["results"]] == [
        "emulator (SQLite, default)", "emulator, entity operation log off (--entity-log 0)", "emulator --in-memory",
        "emulator, SQLite writes skipped (measurement only)", "in-memory backend (durabletask.testing)"]
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


@pytest.mark.slow
def test_quick_pressure_workloads_prove_their_scenario_and_check_their_answers(tmp_path):
    """100 waiting clients (more than the 64 threads of today's server) and a worker frozen holding work."""
    result = subprocess.run([sys.executable, "bench/run.py", "--quick", "--workloads", "waiting,frozen",
                             "--backends", "in-memory", "--output", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    data = json.loads((tmp_path / "latest.json").read_text())
    assert data["results"] == [] and [r["backend"] for r in data["pressure"]] == ["emulator --in-memory"]
    row = data["pressure"][0]
    # every wait reached the server, stayed unfinished, and none ended while the new orchestrations ran
    assert row["waiting clients"] == row["waits sent"] == 100 and row["waits all read by the server"]
    assert row["sample unfinished"] == row["sample of GetInstance"] == 20
    assert row["waits ended before timing"] == row["waits ended while measuring"] == {}
    # each new orchestration was timed (its answer checked) or counted as timed out at the cap: nothing hidden
    timed, timed_out = row["new orchestrations timed"], row["new orchestrations timed out"]
    assert (timed, timed_out) == (5, 0) or (timed_out == 1 and 1 <= timed <= 6)
    assert row["new orchestration p50 ms"] > 0 and row["new orchestrations failed"] == {}
    # the frozen worker held an entity work item when it stopped, and no answer is wrong after its thaw
    assert re.fullmatch(r"freezing while holding \d+ work item\(s\), among them entity @counter@.+",
                        row["frozen worker held"])
    assert row["late completion"] in {"accepted", "refused (UNAVAILABLE)", "refused (NOT_FOUND)",
                                      "refused (FAILED_PRECONDITION)", "refused (CANCELLED)"}
    assert row["unfinished after thaw"] == {} and row["wrong after thaw"] == {}
    markdown = (tmp_path / "latest.md").read_text()
    assert "| emulator --in-memory |" in markdown and "with 100 waiting clients" in markdown


def test_percentiles_interpolate_within_the_values():
    from bench.common import percentiles

    assert percentiles([30_000.0]) == {50: 30_000.0, 95: 30_000.0, 99: 30_000.0}
    q = percentiles(list(range(1, 21)))
    assert q[50] == 10.5 and 19 < q[99] <= 20  # never beyond the largest value
    with pytest.raises(ValueError):
        percentiles([])


def test_pressure_table_spells_out_timeouts_caps_and_wrong_answers():
    from bench import run

    sizes = run.Sizes(waiting_clients=1000)
    row = {"backend": "x", "waiting clients": 1000, "new orchestration p50 ms": 30_000.0,
           "new orchestration p99 ms": 30_000.0, "new orchestrations timed": 1, "new orchestrations timed out": 1,
           "new orchestrations failed": {"RESOURCE_EXHAUSTED": 2},
           "waits ended before timing": {"RESOURCE_EXHAUSTED": 4}, "waits ended while measuring": {"CANCELLED": 3},
           "waits sent": 1000, "waits all read by the server": True, "sample of GetInstance": 20,
           "sample answered": 20, "sample unfinished": 20, "sample errors": {}, "backend RSS MB": 61.4,
           "frozen worker: work done elsewhere s": None, "frozen cap s": 90.0, "late completion": "accepted",
           "unfinished after thaw": {}, "wrong after thaw": {"@counter@a": "holds 51, expected 50"}}
    line = run.pressure_table([row], sizes).splitlines()[2]
    assert line == ("| x | 30,000 | 30,000 (1 timed out at 30 s) | 61 | 1,000/1,000 read; sample 20/20 unfinished; "
                    "new orchestrations RESOURCE_EXHAUSTED x2, waits RESOURCE_EXHAUSTED before timing x4, "
                    "waits CANCELLED while timing x3 | not recovered within 90 s cap; WRONG after the thaw: "
                    "@counter@a holds 51, expected 50 | accepted |")


def test_load_check_tells_unfinished_from_wrong():
    from bench import pressure

    class FakeClient:
        def __init__(self):
            self.outputs, self.counts = {}, {}

        def schedule_new_orchestration(self, name, input):
            return f"id-{input}"

        def signal_entity(self, eid, operation, amount):
            pass

        def get_orchestration_state(self, instance_id):
            output = self.outputs.get(instance_id)
            status = dt_client.OrchestrationStatus.COMPLETED if output else dt_client.OrchestrationStatus.RUNNING
            return type("State", (), {"runtime_status": status, "serialized_output": output})()

        def get_entity(self, eid):
            value = self.counts.get(str(eid))
            return None if value is None else type("Meta", (), {"get_typed_state": lambda self, t: value})()

    client = FakeClient()
    load = pressure.Load(client, orchestrations=2, signals=4, entity_count=2)
    unfinished, wrong = load.check()
    assert len(unfinished) == 2 + 2 + 2 and wrong == {}  # two orchestrations, their counters, two shared counters
    first, second = load.keys
    client.outputs = {load.ids[0]: pressure.expected_output(first), load.ids[1]: pressure.expected_output("other")}
    client.counts = {f"@counter@{first}": 12, f"@counter@{second}": 12, str(load.shared[0]): 2,
                     str(load.shared[1]): 3}
    unfinished, wrong = load.check()
    assert unfinished == {}
    assert set(wrong) == {load.ids[1], str(load.shared[1])}  # a wrong answer, and a signal applied twice


def _serve(servicer, threads: int):
    from concurrent import futures

    import grpc
    from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads))
    pb_grpc.add_TaskHubSidecarServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


def test_waiting_clients_are_proved_at_the_server_and_failed_waits_counted():
    import threading

    import grpc
    from durabletask.internal import orchestrator_service_pb2 as pb
    from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

    from bench.waiting_clients import WaitingClients, unread_bytes

    release, started = threading.Event(), []

    class Server(pb_grpc.TaskHubSidecarServiceServicer):
        def WaitForInstanceCompletion(self, request, context):
            if request.instanceId.startswith("refused"):
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many waiters")
            started.append(request.instanceId)
            release.wait(30)
            return pb.GetInstanceResponse(exists=True)

        def GetInstance(self, request, context):
            state = pb.OrchestrationState(orchestrationStatus=pb.ORCHESTRATION_STATUS_RUNNING)
            return pb.GetInstanceResponse(exists=True, orchestrationState=state)

    server, address = _serve(Server(), threads=40)  # room for the sample to be answered beside 30 waits
    assert unread_bytes(int(address.rsplit(":", 1)[1])) is None  # no connection of ours yet
    waiters = WaitingClients(address, channels=2)
    try:
        probe = waiters.start([f"held-{i}" for i in range(30)] + [f"refused-{i}" for i in range(3)], sample=5)
        assert probe.sent == 33 and probe.read_by_server
        wait_until(lambda: waiters.outcomes["RESOURCE_EXHAUSTED"] == 3, message="refused waits counted")
        assert waiters.pending() == 30 and set(waiters.outcomes) == {"RESOURCE_EXHAUSTED"}
        assert probe.answered == probe.unfinished == probe.sampled == 5
        wait_until(lambda: len(started) == 30, message="every held wait running at the server")
    finally:
        release.set()
        waiters.close()
        server.stop(None)


def test_the_readme_names_the_bench_flags_workloads_and_backends_as_they_are():
    from bench import run

    section = (ROOT / "docs" / "benchmarks.md").read_text()
    options = run.build_parser()._option_string_actions
    for flag in ["--workloads", "--backends", "--waiting-clients", "--new-orchestrations", "--orchestration-cap",
                 "--frozen-cap", "--liveness-timeout", "--soak-seconds", "--quick"]:
        assert f"`{flag}" in section and flag in options, flag
    assert f"`--workloads {','.join(run.WORKLOADS)}`" in section
    assert f"`--backends {','.join(b.key for b in run.backends(ROOT))}`" in section


def test_flags_choose_workloads_backends_sizes_and_the_liveness_timeout(capsys):
    from bench import run

    args, sizes = run.parse_args(["--workloads", "frozen", "--backends", "sqlite,testing", "--waiting-clients", "50",
                                  "--liveness-timeout", "default"])
    assert args.workloads == ["frozen"] and args.backends == ["sqlite", "testing"]
    assert sizes.waiting_clients == 50 and sizes.liveness_timeout_s is None and sizes.new_orchestrations == 20
    with pytest.raises(SystemExit):
        run.parse_args(["--backends", "sqlite,postgres"])
    assert "postgres given; choose from sqlite, log-off, in-memory, writes-skipped, testing" in capsys.readouterr().err
    emulator, testing = (next(b for b in run.backends(ROOT) if b.key == key) for key in ("sqlite", "testing"))
    assert run.with_liveness(emulator, 2.5).args[-2:] == ["--liveness-timeout", "2.5"]
    assert run.with_liveness(testing, 2.5) is testing


def test_the_table_leaves_ratios_out_without_the_baseline():
    from bench import run

    results = [run.Result("emulator", {"orchestrations/s": 120.0}), run.Result("other", {"orchestrations/s": 5.0})]
    assert run.table(results).splitlines()[2:] == ["| emulator | 120.0 |", "| other | 5.00 |"]
    results.append(run.Result(run.BASELINE, {"orchestrations/s": 100.0}))
    assert run.table(results).splitlines()[2] == "| emulator | 120.0 (1.20x) |"


def test_new_orchestrations_are_timed_checked_and_stop_at_the_first_timeout():
    import grpc
    from durabletask.internal import orchestrator_service_pb2 as pb
    from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

    from bench import pressure
    from bench.waiting_clients import Probe

    started = []

    class Server(pb_grpc.TaskHubSidecarServiceServicer):
        """Completes the first three instances as counter_workflow would, refuses one, then gives up waiting."""

        def StartInstance(self, request, context):
            started.append(request)
            if len(started) == 2:
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy")
            return pb.CreateInstanceResponse(instanceId=request.instanceId)

        def WaitForInstanceCompletion(self, request, context):
            if len(started) > 4:
                return pb.GetInstanceResponse(exists=True, orchestrationState=pb.OrchestrationState(
                    orchestrationStatus=pb.ORCHESTRATION_STATUS_RUNNING))
            key = json.loads(started[-1].input.value)
            state = pb.OrchestrationState(orchestrationStatus=pb.ORCHESTRATION_STATUS_COMPLETED)
            state.output.value = pressure.expected_output(key)
            return pb.GetInstanceResponse(exists=True, orchestrationState=state)

    server, address = _serve(Server(), threads=4)
    samples = []
    try:
        result = pressure.WaitingResult(0, Probe(waits=0))
        pressure.time_new_orchestrations(address, 10, 5.0, lambda: samples.append(1), result)
    finally:
        server.stop(None)
    # warm-up (not timed), one refused, two timed, then one that gave up: a timeout at the cap, and the end
    assert len(started) == 5 and len(samples) == 5
    assert result.errors == {"RESOURCE_EXHAUSTED": 1} and result.timeouts == 1
    assert len(result.latencies_ms) == 3 and result.latencies_ms[-1] == 5000.0
    assert all(0 < ms < 5000 for ms in result.latencies_ms[:2])


@pytest.fixture
def worktree(tmp_path):
    """This commit checked out in a temporary folder, as the README's A/B recipe makes one."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (the README's recipe needs git worktree)")
    path = tmp_path / "before"
    subprocess.run(["git", "worktree", "add", "--detach", str(path), "HEAD"], cwd=ROOT, check=True,
                   capture_output=True, timeout=60)
    yield path.resolve()
    subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=True, capture_output=True,
                   timeout=60)


def compare(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "bench/compare.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_compare_runs_both_checkouts_in_turns_and_gives_paired_ratios(worktree):
    result = compare(str(worktree), ".", "--rounds", "2", "--size", "10")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"A = {worktree} (runs {worktree / 'dts_emulator'})" in result.stdout
    assert f"B = {ROOT} (runs {ROOT / 'dts_emulator'})" in result.stdout
    rounds = re.findall(r"round (\d): ([AB]) ", result.stdout)
    assert rounds == [("1", "A"), ("1", "B"), ("2", "B"), ("2", "A")]  # turns alternate against drift
    assert re.search(r"CPU per op B/A \(lower is better\): median \d+\.\d+ \(rounds [\d.]+-[\d.]+, 2 of 2 rounds\)",
                     result.stdout), result.stdout
    assert re.search(r"per s B/A \(higher is better\): median \d+\.\d+", result.stdout), result.stdout


@pytest.mark.slow
def test_compare_runs_each_side_from_its_own_checkout_and_shows_why_one_fails(worktree):
    """Side A's emulator cannot start: the run stops there and says so, in the emulator's own words."""
    (worktree / "dts_emulator" / "__main__.py").write_text(
        "import sys\nprint('this emulator refuses to start', flush=True)\nsys.exit(3)\n")
    result = compare(str(worktree), ".", "--rounds", "2", "--size", "10")
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert re.findall(r"round (\d): ([AB]) ", result.stdout) == [("1", "A")], result.stdout
    assert "round 1: A FAILED" in result.stdout and "this emulator refuses to start" in result.stdout
    assert "CPU per op B/A (lower is better): no ratio (no round finished on both sides)" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("workload, unit", [("signals", "per s B/A (higher"), ("latency", "call p50 ms B/A (lower")])
def test_compare_measures_signals_and_call_latency_at_small_sizes(workload, unit):
    result = compare(".", ".", "--rounds", "1", "--size", "10", "--workload", workload)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert unit in result.stdout, result.stdout


def test_compare_refuses_a_folder_that_is_not_a_checkout(tmp_path):
    result = compare(str(tmp_path), str(ROOT), timeout=60)
    assert result.returncode == 2
    assert f"{tmp_path} is not a checkout of this project" in result.stderr


@pytest.mark.slow
def test_quick_soak_samples_a_bounded_wal_and_the_wal_per_call(tmp_path):
    """Steady load on one data file: before the WAL bound, 8 s of it left a -wal file of 40 MiB."""
    from bench import run

    result = subprocess.run([sys.executable, "bench/run.py", "--quick", "--workloads", "soak", "--backends", "sqlite",
                             "--output", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    soaked = json.loads((tmp_path / "latest.json").read_text())["soak"]
    samples = soaked["samples"]
    assert len(samples) >= 3 and samples[-1]["operations"] > 1_000  # the load was steady and real
    assert all(0 < s["wal_mib"] <= run.SOAK_WAL_BOUND_MIB for s in samples), samples
    assert all(s["call_p50_ms"] > 0 and s["rss_mb"] > 0 for s in samples), samples
    assert 1_000 < soaked["WAL bytes per call"] < 200_000 and soaked["page size"] == 1024
    assert "| after s | operations | WAL MiB |" in (tmp_path / "latest.md").read_text()
