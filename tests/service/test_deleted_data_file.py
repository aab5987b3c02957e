"""The data folder deleted (or the file replaced) under a running emulator: nothing more is acknowledged.

Before, 70 of 70 writes after ``rm -rf`` of the folder were answered OK, and a restart had
none of them. Now each is refused with UNAVAILABLE naming the file, and the log says so once.
"""

from __future__ import annotations

import shutil
import sqlite3
import uuid

import grpc
import pytest
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

from tests.helpers import Emulator

WRITES = 20


@pytest.fixture
def emulator_in_folder(tmp_path):
    folder = tmp_path / "data"
    emu = Emulator(folder / "emulator.db").start()
    yield emu, folder
    emu.stop()


def _start(stub, instance_id: str):
    return stub.StartInstance(pb.CreateInstanceRequest(instanceId=instance_id, name="nobody_runs_it"), timeout=20)


def _refused_writes(stub, path) -> None:
    for i in range(WRITES):
        with pytest.raises(grpc.RpcError) as refused:
            _start(stub, f"after-{uuid.uuid4().hex[:8]}-{i}")
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value.details()
        assert str(path) in refused.value.details() and "deleted or replaced" in refused.value.details()


def test_writes_after_the_data_folder_is_deleted_are_refused_by_name(emulator_in_folder):
    emu, folder = emulator_in_folder
    path = folder / "emulator.db"
    with grpc.insecure_channel(emu.address) as channel:
        stub = pb_grpc.TaskHubSidecarServiceStub(channel)
        _start(stub, "before")  # the file works
        shutil.rmtree(folder)
        assert not folder.exists()  # the scenario: the folder is gone while the emulator runs
        _refused_writes(stub, path)
    said = [line for line in emu.process.lines if "deleted or replaced" in line]
    assert len(said) == 1, "\n".join(said[:5])


def test_writes_after_the_data_file_is_replaced_are_refused(emulator_in_folder):
    emu, folder = emulator_in_folder
    path = folder / "emulator.db"
    with grpc.insecure_channel(emu.address) as channel:
        stub = pb_grpc.TaskHubSidecarServiceStub(channel)
        _start(stub, "before")
        other = folder / "other.db"
        sqlite3.connect(other).close()
        other.replace(path)  # another file where the data file was
        _refused_writes(stub, path)


def test_health_says_so_before_any_write_and_the_dashboard_answers_503(tmp_path):
    """Before, /healthz said "ok" until a gRPC write failed, and a dashboard change got 500 "internal error"."""
    from dts_emulator.store import Store
    from dts_emulator.testing import Emulator as InProcess
    from tests.dashboard.test_ops import health_json, post
    from tests.helpers import free_port

    folder, port = tmp_path / "data", free_port()
    with InProcess(store=Store(folder / "emulator.db"), dashboard_port=port):
        assert health_json(port)["status"] == "ok"
        shutil.rmtree(folder)
        assert not folder.exists()  # the scenario: gone, and nothing has tried to write since
        report = health_json(port)
        assert report["http"] == 503 and report["store"]["state"] == "UNAVAILABLE", report
        assert "deleted or replaced" in report["store"]["error"]
        status, answer = post(port, "/api/hubs/default/start", {"name": "orch"})
        assert status == 503 and str(folder / "emulator.db") in answer["error"], answer
