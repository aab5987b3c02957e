"""Limits and malformed requests: a clear gRPC error naming the limit, and nothing breaks."""

from __future__ import annotations

import grpc
import pytest
from durabletask import client as dt_client
from durabletask import entities, task
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

from tests.helpers import Emulator


@pytest.fixture
def stub(emulator):
    channel = grpc.insecure_channel(emulator.address)
    yield pb_grpc.TaskHubSidecarServiceStub(channel)
    channel.close()


def error_of(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call(request)
    return err.value


@pytest.mark.parametrize("instance_id, fragment", [
    ("x" * 101, "the limit is 100"),
    ("@counter@k", "reserved for entity IDs"),
    ("bad\nid", "control characters"),
])
def test_invalid_instance_ids_are_refused(stub, instance_id, fragment):
    err = error_of(stub.StartInstance, pb.CreateInstanceRequest(instanceId=instance_id, name="x"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in err.details()


def test_instance_id_of_exactly_100_characters_is_fine(stub, uid):
    instance_id = (uid * 10)[:100]
    assert stub.StartInstance(pb.CreateInstanceRequest(instanceId=instance_id, name="x")).instanceId == instance_id
    stub.TerminateInstance(pb.TerminateRequest(instanceId=instance_id))


def test_orchestration_name_is_required(stub):
    err = error_of(stub.StartInstance, pb.CreateInstanceRequest(instanceId="no-name"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "name" in err.details()


@pytest.mark.parametrize("entity_id, fragment", [
    ("@counter@" + "k" * 92, "the limit is 100"),
    ("counter@k", "'@<name>@<key>'"),
    ("@counter@a@b", "'@<name>@<key>'"),
    ("@Counter@k", "lower-case"),
    ("@@k", "'@<name>@<key>'"),
])
def test_invalid_entity_ids_are_refused(stub, entity_id, fragment):
    for call, request in [
        (stub.SignalEntity, pb.SignalEntityRequest(instanceId=entity_id, name="add", requestId="r")),
        (stub.GetEntity, pb.GetEntityRequest(instanceId=entity_id)),
    ]:
        err = error_of(call, request)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert fragment in err.details()


def test_unknown_instance_operations_say_not_found(stub, uid):
    for call, request in [
        (stub.RaiseEvent, pb.RaiseEventRequest(instanceId=f"none-{uid}", name="e")),
        (stub.TerminateInstance, pb.TerminateRequest(instanceId=f"none-{uid}")),
        (stub.SuspendInstance, pb.SuspendRequest(instanceId=f"none-{uid}")),
        (stub.StreamInstanceHistory, pb.StreamInstanceHistoryRequest(instanceId=f"none-{uid}")),
    ]:
        err = error_of(lambda r, call=call: list(call(r)) if call is stub.StreamInstanceHistory else call(r),
                       request)
        assert err.code() == grpc.StatusCode.NOT_FOUND and f"none-{uid}" in err.details()


def test_stale_or_forged_completion_tokens_are_refused(stub):
    for call, request in [
        (stub.CompleteOrchestratorTask, pb.OrchestratorResponse(instanceId="x", completionToken="forged")),
        (stub.CompleteActivityTask, pb.ActivityResponse(instanceId="x", completionToken="forged")),
        (stub.CompleteEntityTask, pb.EntityBatchResult(completionToken="forged")),
        (stub.AbandonTaskEntityWorkItem, pb.AbandonEntityTaskRequest(completionToken="forged")),
    ]:
        err = error_of(call, request)
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "not leased" in err.details()


@pytest.mark.parametrize("token", ["garbage", "nan|x", "inf|", "1e400|x", "1.5|"])
def test_bad_continuation_token_is_invalid_argument(stub, token):
    """Never issued: not a token, or one that parses as a float but names no row."""
    err = error_of(stub.QueryInstances, pb.QueryInstancesRequest(
        query=pb.InstanceQuery(continuationToken=dt_client.helpers.get_string_value(token))))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert f"continuation token '{token}' was not issued" in err.details()


def test_an_entity_id_with_an_empty_key_is_refused_by_name(stub):
    err = error_of(stub.SignalEntity, pb.SignalEntityRequest(instanceId="@c@", name="add", requestId="r"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "'@c@' has an empty key" in err.details()


def test_garbage_bytes_do_not_crash_the_server(emulator, stub):
    channel = grpc.insecure_channel(emulator.address)
    raw = channel.unary_unary("/TaskHubSidecarService/StartInstance")
    with pytest.raises(grpc.RpcError):
        raw(b"\xff\xff\xff\xff garbage", timeout=5)
    channel.close()
    assert stub.GetInstance(pb.GetInstanceRequest(instanceId="still-alive")).exists is False


def hoarder(ctx: entities.EntityContext, size: int):
    ctx.set_state("x" * size)
    return size


def grow(ctx: task.OrchestrationContext, key: str):
    eid = entities.EntityInstanceId("hoarder", key)
    yield ctx.call_entity(eid, "set", 10)
    try:
        yield ctx.call_entity(eid, "set", 2 * 1024 * 1024)
    except task.TaskFailedError as exc:
        return str(exc)


def test_entity_state_over_1_mb_fails_the_operation_and_keeps_old_state(emulator, client, start_worker, uid):
    start_worker(emulator.address, orchestrators=[grow], entities=[hoarder])
    state = client.wait_for_orchestration_completion(client.schedule_new_orchestration(grow, input=uid), timeout=30)
    assert "the limit is 1048576 bytes (1 MB)" in state.get_output()
    assert client.get_entity(entities.EntityInstanceId("hoarder", uid)).get_typed_state(str) == "x" * 10


def test_oversized_request_names_the_limit_and_server_survives(tmp_path):
    emu = Emulator(tmp_path / "small.db", extra=("--max-request-bytes", "65536")).start()
    try:
        c = dt_client.TaskHubGrpcClient(host_address=emu.address)
        with pytest.raises(grpc.RpcError) as err:
            c.schedule_new_orchestration("x", input="y" * 100_000)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "65536" in err.value.details()
        assert c.get_orchestration_state("anything") is None
    finally:
        emu.stop()
