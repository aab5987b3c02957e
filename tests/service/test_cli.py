"""python -m dts_emulator: banner, port checks, task hubs, clean stop."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys

import grpc
import pytest
from durabletask import client as dt_client
from durabletask.internal import orchestrator_service_pb2 as pb

from tests.helpers import Emulator, Process


def test_the_old_command_still_runs_and_names_the_new_one():
    from tests.helpers import ROOT
    result = subprocess.run([sys.executable, "-m", "emulator", "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--in-memory" in result.stdout
    assert "`python -m emulator` is now `python -m dts_emulator`" in result.stderr


def test_banner_names_endpoint_hubs_and_data(tmp_path):
    emu = Emulator(tmp_path / "x.db", hubs="a,b").start()
    try:
        out = emu.process.output
        assert f"gRPC endpoint: http://127.0.0.1:{emu.port}" in out
        assert "task hubs:     a, b" in out
        assert str(tmp_path / "x.db") in out
    finally:
        assert emu.stop() == 0, emu.process.output


def test_port_in_use_is_one_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = Process([sys.executable, "-m", "dts_emulator", "--port", str(port), "--dashboard-port", "0",
                     "--data", str(tmp_path / "d.db")])
        assert p.wait() == 2
    assert f"port {port}" in p.output and "--port" in p.output
    assert "Traceback" not in p.output


def test_hubs_from_environment_and_unknown_hub_is_not_found(tmp_path):
    p = Process([sys.executable, "-m", "dts_emulator", "--port", "0", "--dashboard-port", "0", "--in-memory"],
                env={"DTS_TASK_HUB_NAMES": "alpha,beta"})
    try:
        port = int(p.wait_for_line(r"gRPC endpoint: http://[\d.]+:(\d+)").group(1))
        good = dt_client.TaskHubGrpcClient(host_address=f"127.0.0.1:{port}", metadata=[("taskhub", "beta")])
        assert good.get_orchestration_state("nothing") is None
        bad = dt_client.TaskHubGrpcClient(host_address=f"127.0.0.1:{port}", metadata=[("taskhub", "gamma")])
        with pytest.raises(grpc.RpcError) as err:
            bad.get_orchestration_state("nothing")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert "'gamma'" in err.value.details() and "alpha, beta" in err.value.details()
    finally:
        assert p.stop() == 0, p.output


def test_task_hubs_are_isolated(emulator):
    default = dt_client.TaskHubGrpcClient(host_address=emulator.address)
    other = dt_client.TaskHubGrpcClient(host_address=emulator.address, metadata=[("taskhub", "other")])
    instance_id = default.schedule_new_orchestration("not_served_anywhere")
    assert default.get_orchestration_state(instance_id) is not None
    assert other.get_orchestration_state(instance_id) is None
    default.terminate_orchestration(instance_id)


def test_in_memory_flag_keeps_nothing(tmp_path):
    emu = Emulator(None).start()
    c = dt_client.TaskHubGrpcClient(host_address=emu.address)
    instance_id = c.schedule_new_orchestration("x")
    assert emu.stop() == 0, emu.process.output
    emu.restart()
    try:
        assert dt_client.TaskHubGrpcClient(host_address=emu.address).get_orchestration_state(instance_id) is None
    finally:
        emu.stop()


def test_newer_schema_is_refused_clearly(tmp_path):
    from dts_emulator.store import Store

    Store(tmp_path / "future.db").close()
    db = sqlite3.connect(tmp_path / "future.db")
    db.execute("PRAGMA user_version = 99")
    db.close()
    p = Process([sys.executable, "-m", "dts_emulator", "--port", "0", "--dashboard-port", "0",
                 "--data", str(tmp_path / "future.db")])
    assert p.wait() == 2
    assert "schema version 99" in p.output


def test_hello_answers(emulator):
    channel = grpc.insecure_channel(emulator.address)
    from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc
    from google.protobuf import empty_pb2

    pb_grpc.TaskHubSidecarServiceStub(channel).Hello(empty_pb2.Empty())
    assert pb.HealthPing() is not None
    channel.close()


def test_one_emulator_per_data_file(tmp_path):
    first = Emulator(tmp_path / "shared.db").start()
    try:
        second = Process([sys.executable, "-m", "dts_emulator", "--port", "0", "--dashboard-port", "0",
                          "--data", str(tmp_path / "shared.db")])
        assert second.wait() == 2
        assert "in use by another emulator" in second.output and "Traceback" not in second.output
    finally:
        assert first.stop() == 0, first.process.output
    again = Emulator(tmp_path / "shared.db").start()  # free again once the first has stopped
    assert again.stop() == 0, again.process.output


def test_a_killed_emulator_leaves_its_file_usable(tmp_path):
    first = Emulator(tmp_path / "k.db").start()
    first.kill()
    again = Emulator(tmp_path / "k.db").start()
    assert again.stop() == 0, again.process.output


def test_empty_hub_list_in_environment_is_a_usage_error():
    p = Process([sys.executable, "-m", "dts_emulator", "--port", "0", "--dashboard-port", "0", "--in-memory"],
                env={"DTS_TASK_HUB_NAMES": " , "})
    assert p.wait() == 2
    assert "at least one task hub name" in p.output and "Traceback" not in p.output


# A stop signal that the kernel hands to a thread other than the main one (any of the engine's or gRPC's may
# get it): here a helper thread signals itself, which makes that case certain instead of 1 run in 30.
SIGNAL_ON_ANOTHER_THREAD = """
import signal, threading, time
from dts_emulator.cli import wait_for_stop_signal

def poke():
    while signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # until the main thread waits
        time.sleep(0.01)
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

threading.Thread(target=poke, daemon=True).start()
print("woke on", signal.Signals(wait_for_stop_signal()).name)
"""


@pytest.mark.skipif(not hasattr(__import__("signal"), "pthread_kill"), reason="needs signal.pthread_kill (POSIX)")
def test_a_stop_signal_delivered_to_another_thread_still_wakes_the_main_thread():
    p = Process([sys.executable, "-c", SIGNAL_ON_ANOTHER_THREAD])
    try:
        assert p.wait(timeout=20) == 0, p.output
    finally:
        p.stop(timeout=1)  # SIGKILL if it still sleeps: nothing is left behind
    assert p.output.strip() == "woke on SIGTERM"
