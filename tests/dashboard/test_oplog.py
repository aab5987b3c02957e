"""The entity operation log: what it records, its bound, failures, purging, and its API."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from durabletask import client as dt_client
from durabletask import entities

import worker as sample_worker
from dts_emulator.cli import parse_args
from tests.helpers import InProcessEmulator, entity_url, free_port, wait_until

KEPT = 4


def box(ctx: entities.EntityContext, value=None):
    """Holds what it is given; ``delete`` removes it; ``fail`` raises."""
    if ctx.operation == "delete":
        ctx.set_state(None)
    elif ctx.operation == "fail":
        raise KeyError(f"no such thing: {value}")
    else:
        ctx.set_state(value)
    return value


class Site:
    def __init__(self, entity_log: int, start_worker):
        self.emulator = InProcessEmulator(None, dashboard_port=free_port(), entity_log=entity_log).start()
        start_worker(self.emulator.address, orchestrators=[sample_worker.counter_workflow],
                     entities=[sample_worker.counter, box])
        self.client = dt_client.TaskHubGrpcClient(host_address=self.emulator.address)

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.emulator.dashboard + path, timeout=10) as response:
            return json.loads(response.read())

    def log(self, entity_id: str, query: str = "") -> dict:
        return self.get(entity_url(entity_id, "operations") + query)

    def state(self, name: str, key: str):
        meta = self.client.get_entity(entities.EntityInstanceId(name, key))
        return meta.get_state() if meta else None

    def close(self) -> None:
        self.client.close()
        self.emulator.stop()


@pytest.fixture
def site(request, start_worker):
    s = Site(getattr(request, "param", KEPT), start_worker)
    try:
        yield s
    finally:
        start_worker.stop_all()
        s.close()


def test_each_operation_is_logged_with_sender_input_result_and_states(site, uid):
    counter = entities.EntityInstanceId("counter", uid)
    site.client.signal_entity(counter, "add", 2)
    wait_until(lambda: site.state("counter", uid) == "2", message="the client's add")
    instance_id = site.client.schedule_new_orchestration(sample_worker.counter_workflow, input=uid)
    site.client.wait_for_orchestration_completion(instance_id, timeout=30)
    wait_until(lambda: len(site.log(f"@counter@{uid}")["items"]) == 4, message="four operations logged")
    items = site.log(f"@counter@{uid}")["items"]  # newest first, the bound (4) reached exactly
    assert [i["operation"] for i in items] == ["get", "subtract", "add", "add"]
    assert [i["seq"] for i in items] == sorted((i["seq"] for i in items), reverse=True)
    get, subtract, add5 = items[0], items[1], items[2]
    assert get["sender"] == {"kind": "orchestration", "id": instance_id}
    assert get["result"] == {"value": 14, "size": 2, "truncated": False} and get["outcome"] == "succeeded"
    assert subtract["input"]["value"] == 3 and subtract["stateAfter"]["value"] == 14
    assert add5["sender"]["kind"] == "orchestration" and add5["input"]["value"] == 5
    assert get["sent"] <= get["applied"] and get["error"] is None
    entity_list = site.get("/api/hubs/default/entities?q=counter")["items"]
    assert [e["lastFailure"] for e in entity_list if e["key"] == uid] == [None]


def test_a_client_signal_and_the_states_before_and_after(site, uid):
    site.client.signal_entity(entities.EntityInstanceId("counter", uid), "add", 7)
    wait_until(lambda: site.log(f"@counter@{uid}")["items"], message="logged")
    (row,) = site.log(f"@counter@{uid}")["items"]
    assert row["sender"] == {"kind": "client", "id": None}
    assert row["stateBefore"] is None and row["stateAfter"]["value"] == 7 and row["batchSize"] == 1


def test_an_unknown_operation_is_logged_as_a_failure_with_the_workers_error(site, uid):
    counter = entities.EntityInstanceId("counter", uid)
    site.client.signal_entity(counter, "add", 5)
    site.client.signal_entity(counter, "multiply", 3)
    wait_until(lambda: any(i["outcome"] == "failed" for i in site.log(f"@counter@{uid}")["items"]),
               message="the failure logged")
    failed = site.log(f"@counter@{uid}")["items"][0]
    assert failed["operation"] == "multiply" and failed["input"]["value"] == 3
    assert failed["error"]["type"].endswith("ValueError")
    assert "unknown operation 'multiply'" in failed["error"]["message"]
    assert failed["stateAfter"]["value"] == 5 and failed["result"] is None
    assert site.state("counter", uid) == "5"
    (listed,) = [e for e in site.get("/api/hubs/default/entities?q=counter")["items"] if e["key"] == uid]
    assert listed["lastFailure"] == failed["applied"]


def test_the_log_keeps_the_newest_operations_of_each_entity_and_pages(site, uid):
    total = KEPT * 3  # well past the bound
    for n in range(1, total + 1):
        site.client.signal_entity(entities.EntityInstanceId("box", uid), "put", n)
    wait_until(lambda: site.state("box", uid) == str(total), message="every signal applied")
    page = site.log(f"@box@{uid}", "&page_size=3")
    assert page["kept"] == KEPT and len(page["items"]) == 3 and page["next"]
    rest = site.log(f"@box@{uid}", f"&page_size=3&before={page['next']}")
    assert rest["next"] is None
    inputs = [i["input"]["value"] for i in page["items"] + rest["items"]]
    assert inputs == list(range(total, total - KEPT, -1))


def test_long_inputs_and_states_are_cut_with_their_size_stated(site, uid):
    value = "x" * 5000
    site.client.signal_entity(entities.EntityInstanceId("box", uid), "put", value)
    wait_until(lambda: site.log(f"@box@{uid}")["items"], message="logged")
    (row,) = site.log(f"@box@{uid}")["items"]
    assert row["input"]["truncated"] and row["input"]["size"] == len(json.dumps(value))
    assert len(row["input"]["value"]) == 1024 and row["stateAfter"]["truncated"]


def test_the_log_goes_with_the_entity(site, uid):
    box_id = entities.EntityInstanceId("box", uid)
    site.client.signal_entity(box_id, "put", 1)
    site.client.signal_entity(box_id, "fail", 2)
    wait_until(lambda: len(site.log(f"@box@{uid}")["items"]) == 2, message="two operations logged")
    site.client.signal_entity(box_id, "delete")
    wait_until(lambda: site.state("box", uid) is None, message="the entity deleted")
    assert site.log(f"@box@{uid}")["items"] == []
    site.client.signal_entity(box_id, "put", 3)  # a new entity of the same ID starts a new log
    wait_until(lambda: site.log(f"@box@{uid}")["items"], message="logged again")
    assert [i["input"]["value"] for i in site.log(f"@box@{uid}")["items"]] == [3]


@pytest.mark.parametrize("site", [0], indirect=True)
def test_a_bound_of_zero_turns_the_log_off(site, uid):
    site.client.signal_entity(entities.EntityInstanceId("counter", uid), "add", 1)
    wait_until(lambda: site.state("counter", uid) == "1", message="applied")
    page = site.log(f"@counter@{uid}")
    assert page == {"items": [], "next": None, "kept": 0}


def test_bad_log_parameters_are_400(site):
    for query in ("&page_size=0", "&before=x", "&before=-1"):
        with pytest.raises(urllib.error.HTTPError) as raised:
            site.log("@counter@k", query)
        assert raised.value.code == 400


def test_the_bound_is_a_flag():
    assert parse_args([]).entity_log == 100
    assert parse_args(["--entity-log", "0"]).entity_log == 0
    with pytest.raises(SystemExit):
        parse_args(["--entity-log", "-1"])
