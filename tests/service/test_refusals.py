"""Limits and refusals: bad input gets a clear gRPC error naming the limit or the field, and nothing breaks.

IDs, names, tokens and sizes over their limits; what is at the limit still works; at the
waiter limit a wait that need not wait still answers; a huge query page is capped.
(Completions that break the protocol: test_raw_protocol.py.)
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from durabletask import client as dt_client
from durabletask import entities, task
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

from dts_emulator import control
from tests.helpers import Emulator, InProcessEmulator, wait_until
from tests.service.aio_streams import Streams, create


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


@pytest.mark.parametrize("bad, names", [
    ("nul\x00", "U+0000"), ("del\x7f", "U+007F"), ("bidi\u202e", "U+202E"), ("isolate\u2066", "U+2066"),
])
def test_ids_and_names_with_control_characters_are_refused(stub, bad, names):
    for call, request in [
        (stub.StartInstance, pb.CreateInstanceRequest(instanceId=bad, name="orch")),
        (stub.StartInstance, pb.CreateInstanceRequest(instanceId="fine", name=bad)),
        (stub.RaiseEvent, pb.RaiseEventRequest(instanceId="fine", name=bad)),
        (stub.SignalEntity, pb.SignalEntityRequest(instanceId=f"@c@{bad}", name="add", requestId="r")),
        (stub.SignalEntity, pb.SignalEntityRequest(instanceId="@c@k", name=bad, requestId="r")),
    ]:
        err = error_of(call, request)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"must not contain control characters (found {names})" in err.details()


def test_names_are_bounded(stub):
    for call, request in [
        (stub.StartInstance, pb.CreateInstanceRequest(instanceId="fine", name="n" * 1_000_000)),
        (stub.RaiseEvent, pb.RaiseEventRequest(instanceId="fine", name="n" * 257)),
        (stub.SignalEntity, pb.SignalEntityRequest(instanceId="@c@k", name="n" * 257, requestId="r")),
    ]:
        err = error_of(call, request)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "the limit is 256" in err.details()
    assert stub.StartInstance(pb.CreateInstanceRequest(instanceId="longest", name="n" * 256)).instanceId


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


def test_a_huge_query_page_is_capped_rather_than_failing_after_the_work():
    emu = InProcessEmulator(None, max_request_bytes=1 << 20).start()
    streams = Streams(emu.address)
    try:
        data = '"' + "x" * 4000 + '"'
        emu.on_loop(lambda: [emu.backend.create_instance("default", f"q{i}", "wf", input=data)
                              for i in range(400)])  # 1.6 MB of inputs, more than one 1 MB message holds

        async def go():
            return await streams.stub.QueryInstances(pb.QueryInstancesRequest(query=pb.InstanceQuery(
                maxInstanceCount=1_000_000, fetchInputsAndOutputs=True)))
        page = streams.run(go())
        assert 0 < len(page.orchestrationState) < 400 and page.HasField("continuationToken")
    finally:
        streams.close()
        emu.stop()


def test_at_the_waiter_limit_a_wait_that_need_not_wait_still_answers():
    emu = InProcessEmulator(None, max_waiters=2).start()
    streams = Streams(emu.address)
    try:
        create(emu, "parked", 1)
        create(emu, "done", 1)
        emu.on_loop(lambda: control.terminate(emu.backend, "default", "done0", None, False))

        async def hold():
            return [asyncio.ensure_future(streams.stub.WaitForInstanceCompletion(
                pb.GetInstanceRequest(instanceId="parked0"))) for _ in range(2)]
        held = streams.run(hold())
        wait_until(lambda: emu.on_loop(lambda: emu.backend.waiting) == 2, message="two waiters at the limit")

        async def wait_done():
            return await streams.stub.WaitForInstanceCompletion(pb.GetInstanceRequest(instanceId="done0"))
        answer = streams.run(wait_done())
        assert answer.orchestrationState.orchestrationStatus == pb.ORCHESTRATION_STATUS_TERMINATED
        for w in held:
            streams.loop.call_soon_threadsafe(w.cancel)
    finally:
        streams.close()
        emu.stop()
