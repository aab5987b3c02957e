"""CreateTaskHub/DeleteTaskHub for hubs not named at start-up: only with --allow-hub-management."""

from __future__ import annotations

import grpc
import pytest
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

from dts_emulator import hubs
from dts_emulator.testing import Emulator


def call(emu: Emulator, method: str, request, hub: str):
    with grpc.insecure_channel(emu.address) as channel:
        stub = pb_grpc.TaskHubSidecarServiceStub(channel)
        return getattr(stub, method)(request, metadata=[("taskhub", hub)])


def code_of(emu: Emulator, method: str, request, hub: str) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as raised:
        call(emu, method, request, hub)
    return raised.value.code(), raised.value.details()


def start(emu: Emulator, hub: str) -> str:
    return call(emu, "StartInstance", pb.CreateInstanceRequest(name="orch", instanceId="i1"), hub).instanceId


def test_off_by_default_like_the_official_emulator():
    with Emulator() as emu:
        code, details = code_of(emu, "CreateTaskHub", pb.CreateTaskHubRequest(), "team-a")
        assert code == grpc.StatusCode.NOT_FOUND
        assert "--allow-hub-management" in details
        assert emu.backend.hubs == ["default"]


def test_a_created_hub_is_served_and_a_deleted_one_is_gone():
    with Emulator(allow_hub_management=True) as emu:
        call(emu, "CreateTaskHub", pb.CreateTaskHubRequest(), "team-a")
        assert start(emu, "team-a") == "i1"
        call(emu, "CreateTaskHub", pb.CreateTaskHubRequest(), "team-a")  # again: nothing changes
        assert emu.on_loop(lambda: emu.backend.instance("team-a", "i1")) is not None
        call(emu, "DeleteTaskHub", pb.DeleteTaskHubRequest(), "team-a")
        code, _ = code_of(emu, "StartInstance", pb.CreateInstanceRequest(name="orch"), "team-a")
        assert code == grpc.StatusCode.NOT_FOUND
        # A hub named at start-up loses its data but is still served.
        start(emu, "default")
        call(emu, "DeleteTaskHub", pb.DeleteTaskHubRequest(), "default")
        assert emu.on_loop(lambda: emu.backend.instance("default", "i1")) is None
        assert start(emu, "default") == "i1"


def test_bad_names_and_too_many_hubs_are_refused(monkeypatch):
    monkeypatch.setattr(hubs, "MAX_HUBS", 2)
    with Emulator(allow_hub_management=True) as emu:
        code, details = code_of(emu, "CreateTaskHub", pb.CreateTaskHubRequest(), "no/slashes")
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "not valid" in details
        call(emu, "CreateTaskHub", pb.CreateTaskHubRequest(), "second")
        code, details = code_of(emu, "CreateTaskHub", pb.CreateTaskHubRequest(), "third")
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "delete one first" in details
        assert emu.backend.hubs == ["default", "second"]
