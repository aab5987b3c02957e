"""The dashboard's JSON API over real HTTP: every endpoint, its actions, and bad parameters."""

from __future__ import annotations

import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

import pytest
from durabletask import client as dt_client
from durabletask import entities

from dts_emulator.dashboard.app import STATIC
from tests.helpers import DemoSite, Emulator, Process, awaits_approval, entity_url, instance_url, wait_until


class Api:
    def __init__(self, base: str):
        self.base = base

    def call(self, method: str, path: str, body=None, raw: bytes | None = None) -> tuple[int, dict]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            payload = err.read()
            try:
                return err.code, json.loads(payload)
            except ValueError:
                return err.code, {"error": payload.decode(errors="replace")}

    def get(self, path: str) -> tuple[int, dict]:
        return self.call("GET", path)

    def post(self, path: str, body=None, raw: bytes | None = None) -> tuple[int, dict]:
        return self.call("POST", path, body, raw)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    site = DemoSite(tmp_path_factory.mktemp("dash") / "d.db")
    yield site
    site.close()


@pytest.fixture
def api(dashboard) -> Api:
    return Api(dashboard.emulator.dashboard)


@pytest.fixture
def grpc_client(dashboard):
    return dashboard.client


def test_hubs_count_instances_and_entities(api):
    status, body = api.get("/api/hubs")
    assert status == 200
    (hub,) = body["hubs"]
    assert hub["name"] == "default" and hub["instances"]["COMPLETED"] >= 5 and hub["entities"] >= 6


def test_instances_filter_search_and_page(api):
    status, body = api.get("/api/hubs/default/instances?status=COMPLETED&page_size=2")
    assert status == 200 and len(body["items"]) == 2 and body["next"]
    assert all(i["status"] == "COMPLETED" for i in body["items"])
    _, following = api.get(f"/api/hubs/default/instances?status=COMPLETED&page_size=2&after={body['next']}")
    assert {i["id"] for i in following["items"]}.isdisjoint({i["id"] for i in body["items"]})
    _, by_name = api.get("/api/hubs/default/instances?q=counter_work")
    assert len(by_name["items"]) >= 5
    first_id = body["items"][0]["id"]
    _, by_id = api.get(f"/api/hubs/default/instances?q={first_id[:10]}")
    assert first_id in {i["id"] for i in by_id["items"]}


@pytest.mark.parametrize("query, fragment", [
    ("status=DONE", "unknown status 'DONE'"),
    ("page_size=abc", "'page_size' must be a whole number"),
    ("page_size=0", "between 1 and 200"),
    ("page_size=5000", "between 1 and 200"),
    ("after=nonsense", "not a page token"),
])
def test_bad_instance_list_parameters_are_400(api, query, fragment):
    status, body = api.get(f"/api/hubs/default/instances?{query}")
    assert status == 400 and fragment in body["error"]


def test_unknown_hub_instance_and_entity_are_404(api):
    assert api.get("/api/hubs/nope/instances")[0] == 404
    assert api.get(instance_url("no-such-instance"))[0] == 404
    assert api.get(entity_url("@counter@nobody"))[0] == 404


def test_instance_detail_shows_entity_signals_calls_and_result(api):
    _, page = api.get("/api/hubs/default/instances?q=counter_workflow&page_size=1")
    status, body = api.get(instance_url(page['items'][0]['id']))
    assert status == 200
    assert body["instance"]["output"].endswith("final value: 12")
    labels = [e["label"] for e in body["history"]]
    assert sum(label.startswith("Signal add to counter/") for label in labels) == 2
    assert any(label.startswith("Signal subtract to counter/") for label in labels)
    assert any(label.startswith("Call get on counter/") for label in labels)
    returned = [e for e in body["history"] if re.fullmatch(r"Call get on counter/.+ returned", e["label"])]
    assert returned and returned[0]["payload"] == 12
    assert body["history"][-1]["label"] == "Finished: COMPLETED"


def oldest(api, name: str) -> dict:
    """The first instance of this name the demo ran (for transfer_funds: Part 2's, from account-A)."""
    _, page = api.get(f"/api/hubs/default/instances?q={name}&page_size=200")
    instance_id = [i["id"] for i in page["items"] if i["name"] == name][-1]
    return api.get(instance_url(instance_id))[1]


def test_a_transfer_draws_its_critical_section(api):
    body = oldest(api, "transfer_funds")
    drawn = body["drawings"]
    (lock,) = [s for s in drawn["timeline"] if s["kind"] == "lock"]
    assert lock["label"] == "account/account-A, account/account-B" and lock["outcome"] == "done"
    assert lock["start"] <= lock["granted"] < lock["end"] and lock["heldMs"] > 0
    calls = [s for s in drawn["timeline"] if s["kind"] == "entity"]
    assert [c["label"] for c in calls] == ["balance on account/account-A", "withdraw on account/account-A",
                                           "deposit on account/account-B"]
    assert all(lock["granted"] <= c["start"] and c["end"] <= lock["end"] for c in calls)  # inside the section
    kinds = [(m["kind"], m["label"]) for m in drawn["sequence"]["messages"]]
    assert kinds[:4] == [("start", "start transfer_funds"), ("lock", "lock request"), ("lock", "lock request"),
                         ("lock", "lock granted")]
    assert kinds[-3:] == [("lock", "release"), ("lock", "release"), ("result", "completed")]
    entities_drawn = [p["id"] for p in drawn["sequence"]["participants"] if p["kind"] == "entity"]
    assert entities_drawn == ["@account@account-A", "@account@account-B"]
    # Entity IDs in the history are given for links: the lock set, each call and its answer.
    linked = [(e["kind"], [link["id"] for link in e["links"]]) for e in body["history"] if e["links"]]
    assert linked[0] == ("entityLockRequested", ["@account@account-A", "@account@account-B"])
    assert ("entityOperationCompleted", ["@account@account-B"]) in linked
    assert linked[-1] == ("entityUnlockSent", ["@account@account-B"])
    # The history's times keep their milliseconds.
    assert all(re.fullmatch(r".+T\d\d:\d\d:\d\d\.\d{3,9}Z", e["timestamp"]) for e in body["history"])


def test_an_orchestration_started_by_an_entity_names_it(api):
    body = oldest(api, "audit_workflow")
    assert body["instance"]["startedBy"] == {"kind": "entity", "id": "@account@account-A"}
    first = body["drawings"]["sequence"]["participants"][0]
    assert first == {"key": "starter", "kind": "entity", "label": "account/account-A", "id": "@account@account-A"}
    assert oldest(api, "transfer_funds")["instance"]["startedBy"] == {"kind": "client", "id": None}


def test_an_accounts_operation_log_shows_each_critical_section(api):
    _, log = api.get(entity_url("@account@account-A", "operations") + "&page_size=200")
    rows = log["items"][::-1]  # oldest first
    granted = [n for n, r in enumerate(rows) if r["operation"] == "(lock granted)"]
    assert len(granted) >= 2
    for n in granted[:-1]:
        owner = rows[n]["sender"]["id"]
        assert rows[n]["sender"]["kind"] == "lock"
        assert api.get(instance_url(owner))[1]["instance"]["name"] == "transfer_funds"
        end = next(m for m in range(n + 1, len(rows)) if rows[m]["operation"] == "(lock released)")
        assert rows[end]["sender"] == {"kind": "lock", "id": owner}
        inside = rows[n + 1:end]
        assert inside and all(r["sender"] == {"kind": "orchestration", "id": owner} for r in inside)


def test_actions_terminate_suspend_resume_raise_and_purge(api, grpc_client, uid):
    first = grpc_client.schedule_new_orchestration(awaits_approval, instance_id=f"a-{uid}")
    grpc_client.wait_for_orchestration_start(first, timeout=30)
    assert api.post(instance_url(first, "suspend"))[0] == 200
    wait_until(lambda: api.get(instance_url(first))[1]["instance"]["status"] == "SUSPENDED",
               message="SUSPENDED")
    assert api.post(instance_url(first, "resume"))[0] == 200
    assert api.post(instance_url(first, "raise-event"), {"name": "approve", "data": {"by": "x"}})[0] \
        == 200
    assert grpc_client.wait_for_orchestration_completion(first, timeout=30).get_output() == {"by": "x"}
    second = grpc_client.schedule_new_orchestration(awaits_approval, instance_id=f"b-{uid}")
    grpc_client.wait_for_orchestration_start(second, timeout=30)
    status, body = api.post(instance_url(second, "purge"))
    assert status == 409 and "still running" in body["error"]
    assert api.post(instance_url(second, "terminate"), {"reason": "enough"})[0] == 200
    state = grpc_client.wait_for_orchestration_completion(second, timeout=30)
    assert state.runtime_status == dt_client.OrchestrationStatus.TERMINATED
    assert api.post(instance_url(second, "purge"))[0] == 200
    assert api.get(instance_url(second))[0] == 404


@pytest.mark.parametrize("path, body, raw, fragment", [
    ("raise-event", {}, None, "'name'"),
    ("raise-event", None, b"{not json", "not JSON"),
    ("raise-event", None, b"[1, 2]", "JSON object"),
    ("terminate", {"reason": 5}, None, "'reason'"),
])
def test_bad_action_bodies_are_400(api, grpc_client, uid, path, body, raw, fragment):
    instance_id = grpc_client.schedule_new_orchestration(awaits_approval, instance_id=f"bad-{uid}")
    status, response = api.post(instance_url(instance_id, path), body, raw)
    assert status == 400 and fragment in response["error"]
    grpc_client.terminate_orchestration(instance_id)


def test_state_changes_only_through_post(api):
    _, page = api.get("/api/hubs/default/instances?page_size=1")
    instance_id = page["items"][0]["id"]
    assert api.get(instance_url(instance_id, "terminate"))[0] in (404, 405)
    assert api.get(entity_url("@counter@my-counter", "signal"))[0] in (404, 405)


def test_unknown_action_is_404(api):
    _, page = api.get("/api/hubs/default/instances?page_size=1")
    assert api.post(instance_url(page['items'][0]['id'], "explode"))[0] == 404


def test_entities_list_search_and_detail(api):
    status, body = api.get("/api/hubs/default/entities?q=my-counter")
    assert status == 200
    states = {e["key"]: e["state"] for e in body["items"]}
    assert states["my-counter"] == 75 and states["my-counter-orch-1"] == 12
    _, by_name = api.get("/api/hubs/default/entities?q=count&page_size=2")
    assert len(by_name["items"]) == 2 and by_name["next"]
    _, nothing = api.get("/api/hubs/default/entities?q=zzz")
    assert nothing["items"] == []
    status, detail = api.get(entity_url("@counter@my-counter"))
    assert status == 200 and detail["entity"]["state"] == 75 and detail["pending"] == []
    assert detail["entity"]["lockedBy"] is None


def test_signal_from_the_dashboard(api, grpc_client, uid):
    assert api.post(entity_url(f"@counter@{uid}", "signal"), {"operation": "add", "input": 7})[0] == 200
    wait_until(lambda: (m := grpc_client.get_entity(entities.EntityInstanceId("counter", uid)))
               and m.get_typed_state(int) == 7, message="signalled counter")


@pytest.mark.parametrize("entity_id, body, raw, fragment", [
    ("@counter@k", {}, None, "'operation'"),
    ("@counter@k", None, b"nope", "not JSON"),
    ("counter-k", {"operation": "add"}, None, "'@<name>@<key>'"),
    ("@Counter@k", {"operation": "add"}, None, "lower-case"),
])
def test_bad_signals_are_400(api, entity_id, body, raw, fragment):
    status, response = api.post(entity_url(entity_id, "signal"), body, raw)
    assert status == 400 and fragment in response["error"]


def test_html_in_keys_is_returned_as_data(api, grpc_client):
    key = "<img src=x onerror=alert(1)>"
    grpc_client.signal_entity(entities.EntityInstanceId("counter", key), "add", 1)
    wait_until(lambda: api.get(entity_url(f"@counter@{key}"))[0] == 200, message="entity")
    assert api.get(entity_url(f"@counter@{key}"))[1]["entity"]["key"] == key


def test_pages_are_served_for_every_view(api):
    for path in ("/", "/hubs/default/instances", entity_url("@counter@my-counter", api=False)):
        with urllib.request.urlopen(api.base + path, timeout=10) as response:
            page = response.read().decode()
            assert response.status == 200
        # The page loads every script in static/, the shell (app.js, the helpers the views use) first.
        scripts = re.findall(r'<script src="/static/([^"]+)"></script>', page)
        assert scripts[0] == "app.js" and sorted(scripts) == sorted(p.name for p in STATIC.glob("*.js"))
    for script in scripts:
        with urllib.request.urlopen(f"{api.base}/static/{script}", timeout=10) as response:
            code = response.read().decode()
        assert response.status == 200 and "javascript" in response.getheader("content-type")
        assert '"use strict";' in code and "innerHTML" not in code, script
    assert "textContent" in (STATIC / "app.js").read_text()


def test_dashboard_port_in_use_is_one_clear_error(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = Process([sys.executable, "-m", "dts_emulator", "--port", "0", "--dashboard-port", str(port), "--in-memory"])
        assert p.wait() == 2
    assert f"port {port}" in p.output and "--dashboard-port" in p.output


def test_dashboard_off_says_so_in_the_banner(tmp_path):
    emu = Emulator(None).start()
    try:
        assert "dashboard:     off" in emu.process.output
    finally:
        emu.stop()
