"""Nothing accepted is undeliverable: every work item fits in what the SDK's worker receives (4 MiB).

Each scenario is created at the size that used to stall a hub (the worker's stream died on the
oversized item and got it again on reconnect, forever), with a real SDK worker whose channel keeps
the default receive limit; in each, an unrelated orchestration still completes.
"""

from __future__ import annotations

import grpc
import pytest
from durabletask import client as dt_client
from durabletask import entities, task
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc

from dts_emulator.validation import MAX_MESSAGE_BYTES
from tests.helpers import wait_until

LIMIT = str(MAX_MESSAGE_BYTES)


def echo(ctx: task.OrchestrationContext, value):
    return value


def megabyte(ctx: task.ActivityContext, _):
    return "x" * 1_000_000


def hoard(ctx: task.OrchestrationContext, rounds: int):
    for _ in range(rounds):
        yield ctx.call_activity(megabyte)
    return "kept everything"


def sink(ctx: entities.EntityContext, value):
    """Counts the operations it took, and keeps a payload when asked to."""
    state = ctx.get_state(dict, {"taken": 0, "kept": ""})
    state["taken"] += 1
    if ctx.operation == "keep":
        state["kept"] = value
    ctx.set_state(state)
    return state["taken"]


def call_with(ctx: task.OrchestrationContext, args):
    key, size = args
    try:
        yield ctx.call_entity(entities.EntityInstanceId("sink", key), "take", "y" * size)
    except task.TaskFailedError as exc:
        return str(exc)
    return "delivered"


@pytest.fixture
def emu(engine_emulator):
    return engine_emulator


@pytest.fixture
def client(emu):
    c = dt_client.TaskHubGrpcClient(host_address=emu.address)
    yield c
    c.close()


def unrelated_completes(client: dt_client.TaskHubGrpcClient) -> None:
    instance_id = client.schedule_new_orchestration(echo, input="still flowing")
    state = client.wait_for_orchestration_completion(instance_id, timeout=30)
    assert state.runtime_status == dt_client.OrchestrationStatus.COMPLETED
    assert state.serialized_output == '"still flowing"'


def test_a_5_mb_input_is_refused_at_start(emu, client, start_worker):
    start_worker(emu.address, orchestrators=[echo])
    with pytest.raises(grpc.RpcError) as err:
        client.schedule_new_orchestration(echo, input="x" * 5_000_000)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert LIMIT in err.value.details()
    unrelated_completes(client)


def test_an_input_that_fits_the_request_but_not_the_work_item_fails_its_instance(emu, client, start_worker):
    start_worker(emu.address, orchestrators=[echo])
    instance_id = client.schedule_new_orchestration(echo, input="x" * (MAX_MESSAGE_BYTES - 200))
    state = client.wait_for_orchestration_completion(instance_id, timeout=30, fetch_payloads=False)
    assert state.runtime_status == dt_client.OrchestrationStatus.FAILED
    assert f"the SDK's worker receives at most {LIMIT} bytes per message" in state.failure_details.message
    unrelated_completes(client)


def test_20_signals_of_300_kb_reach_one_entity_in_batches_that_fit(emu, client, start_worker, uid):
    entity = entities.EntityInstanceId("sink", uid)
    for _ in range(20):
        client.signal_entity(entity, "take", "s" * 300_000)

    async def backlog():
        return emu.backend.backlog("default", str(entity))

    assert emu.call(backlog()) == 20  # the precondition: 6 MB waiting for one batch when a worker comes
    start_worker(emu.address, orchestrators=[echo], entities=[sink])
    wait_until(lambda: (e := client.get_entity(entity)) and e.get_typed_state(dict)["taken"] == 20, timeout=60,
               message="all 20 signals to be applied")
    unrelated_completes(client)


def test_a_history_past_4_mib_fails_its_instance_naming_size_and_limit(emu, client, start_worker):
    start_worker(emu.address, orchestrators=[hoard, echo], activities=[megabyte])
    instance_id = client.schedule_new_orchestration(hoard, input=6)
    state = client.wait_for_orchestration_completion(instance_id, timeout=60)
    assert state.runtime_status == dt_client.OrchestrationStatus.FAILED
    message = state.failure_details.message
    assert f"the SDK's worker receives at most {LIMIT} bytes per message" in message
    size = int(message.split(" bytes;")[0].rsplit(" ", 1)[1])
    assert size > MAX_MESSAGE_BYTES  # the precondition: the history did pass the limit
    unrelated_completes(client)


def test_an_operation_too_large_to_deliver_with_its_entity_state_fails_its_caller(emu, client, start_worker, uid):
    start_worker(emu.address, orchestrators=[call_with, echo], entities=[sink])
    entity = entities.EntityInstanceId("sink", uid)
    client.signal_entity(entity, "keep", "k" * 900_000)
    wait_until(lambda: (e := client.get_entity(entity)) and e.get_typed_state(dict)["taken"] == 1,
               message="the entity to hold 900 KB")
    instance_id = client.schedule_new_orchestration(call_with, input=[uid, 3_500_000])
    state = client.wait_for_orchestration_completion(instance_id, timeout=30)
    assert state.runtime_status == dt_client.OrchestrationStatus.COMPLETED
    assert f"the SDK's worker receives at most {LIMIT} bytes per message" in state.serialized_output
    assert client.get_entity(entity).get_typed_state(dict)["taken"] == 1  # the state is as it was
    unrelated_completes(client)


def test_query_pages_fit_in_what_a_client_receives(emu, client):
    """Six instances with 1 MB inputs: 6 MB that one page cannot carry, so it comes in pages that fit."""
    ids = {client.schedule_new_orchestration("not-registered", input="i" * 1_000_000) for _ in range(6)}
    channel = grpc.insecure_channel(emu.address)
    stub = pb_grpc.TaskHubSidecarServiceStub(channel)
    try:
        seen, pages, token = [], 0, None
        while True:
            query = pb.InstanceQuery(fetchInputsAndOutputs=True, maxInstanceCount=100, continuationToken=token)
            page = stub.QueryInstances(pb.QueryInstancesRequest(query=query))
            assert page.ByteSize() <= MAX_MESSAGE_BYTES
            seen += [(s.instanceId, len(s.input.value)) for s in page.orchestrationState]
            pages += 1
            if not page.HasField("continuationToken"):
                break
            token = page.continuationToken
        assert sorted(seen) == sorted((i, 1_000_002) for i in ids) and pages >= 2
    finally:
        channel.close()


def test_an_instance_too_large_to_return_with_its_payloads_says_so_and_its_history_streams(emu, client, start_worker):
    start_worker(emu.address, orchestrators=[echo])
    instance_id = client.schedule_new_orchestration(echo, input="x" * 2_500_000)
    state = client.wait_for_orchestration_completion(instance_id, timeout=30, fetch_payloads=False)
    assert state.runtime_status == dt_client.OrchestrationStatus.COMPLETED  # 2.5 MB in, 2.5 MB out
    with pytest.raises(grpc.RpcError) as err:
        client.get_orchestration_state(instance_id)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"a response may be at most {LIMIT} bytes" in err.value.details()
    assert client.get_orchestration_state(instance_id, fetch_payloads=False).instance_id == instance_id
    # Its 5 MB history (started with the input, completed with the output) streams in chunks that fit.
    assert len(client.get_orchestration_history(instance_id)) >= 4


def five_megabytes(ctx: task.ActivityContext, _):
    return "x" * 5_000_000


def catches(ctx: task.OrchestrationContext, _):
    try:
        yield ctx.call_activity(five_megabytes)
    except task.TaskFailedError as exc:
        return str(exc)
    return "delivered"


def test_an_activity_result_too_large_to_accept_fails_the_task(emu, client, start_worker):
    start_worker(emu.address, orchestrators=[catches, echo], activities=[five_megabytes])
    state = client.wait_for_orchestration_completion(client.schedule_new_orchestration(catches), timeout=30)
    assert state.runtime_status == dt_client.OrchestrationStatus.COMPLETED
    assert f"bytes; the emulator accepts at most {LIMIT} bytes per message" in state.serialized_output
    unrelated_completes(client)


def grows(ctx: task.OrchestrationContext, _):
    return "x" * 5_000_000


def test_an_orchestration_output_too_large_to_accept_fails_the_instance(emu, client, start_worker):
    start_worker(emu.address, orchestrators=[grows, echo])
    state = client.wait_for_orchestration_completion(client.schedule_new_orchestration(grows), timeout=30)
    assert state.runtime_status == dt_client.OrchestrationStatus.FAILED
    assert f"the emulator accepts at most {LIMIT} bytes per message" in state.failure_details.message
    unrelated_completes(client)


def test_a_message_limit_too_small_for_any_work_item_is_a_usage_error(capsys):
    from dts_emulator.cli import parse_args

    assert parse_args([]).max_request_bytes == MAX_MESSAGE_BYTES == 4 * 1024 * 1024
    assert parse_args(["--max-request-bytes", "65536"]).max_request_bytes == 65536
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--max-request-bytes", "1000"])
    assert exit_.value.code == 2 and "must be at least 65536 bytes (64 KiB)" in capsys.readouterr().err
