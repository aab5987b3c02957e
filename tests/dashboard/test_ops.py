"""Operating the emulator: the health report (HTTP, gRPC, --check), read-only mode, Aspire's links, the icon."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys

import grpc
import pytest
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dts_emulator.dashboard.extras import aspire_target
from dts_emulator.store import Store
from dts_emulator.testing import Emulator
from tests.helpers import Process, free_port, wait_until
from tests.store.test_failures import FailingConnection


def request(port: int, method: str, path: str, body: bytes | None = None, host: str | None = None,
            **headers: str) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest(method, path, skip_host=True)
        connection.putheader("Host", host or f"127.0.0.1:{port}")
        for name, value in headers.items():
            connection.putheader(name.replace("_", "-"), value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def health_json(port: int) -> dict | None:
    """The /healthz answer, or None while nothing listens yet."""
    try:
        status, _, body = request(port, "GET", "/healthz")
    except OSError:
        return None
    return {"http": status, **json.loads(body)}


def check(endpoint: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dts_emulator", "--check", endpoint], capture_output=True, text=True,
                          timeout=60)


def test_health_answers_a_ci_job_that_started_the_emulator(tmp_path):
    """As CI would: start the process, poll /healthz until it answers, then ask over gRPC with --check."""
    grpc_port, dashboard_port = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{grpc_port}"
    assert check(endpoint).returncode == 1  # the precondition: nothing serves there yet
    process = Process([sys.executable, "-m", "dts_emulator", "--port", str(grpc_port), "--dashboard-port",
                       str(dashboard_port), "--data", str(tmp_path / "ci.db"), "--task-hubs", "default,ci"])
    try:
        report = wait_until(lambda: health_json(dashboard_port), timeout=60, message="/healthz answering")
        assert report["http"] == 200 and report["status"] == "ok"
        assert report["taskHubs"] == ["default", "ci"]
        assert report["store"] == {"state": "AVAILABLE", "inMemory": False}
        assert 0 <= report["uptimeSeconds"] < 600
        # A probe names the pod's address, not a host the dashboard serves: the health report still answers.
        status, _, body = request(dashboard_port, "GET", "/healthz", host="10.1.2.3:8082")
        # ... with up or down alone: a page on a rebound name learns no hub, path or error.
        assert status == 200 and json.loads(body) == {"status": "ok"}
        assert request(dashboard_port, "GET", "/api/hubs", host="10.1.2.3:8082")[0] == 403
        answered = check(endpoint)
        assert answered.returncode == 0, answered.stdout + answered.stderr
        assert "SERVING" in answered.stdout
    finally:
        process.stop()
    stopped = check(endpoint)
    assert stopped.returncode == 1 and "no answer" in stopped.stdout


def test_a_store_that_refuses_writes_is_reported_unavailable(tmp_path):
    connect, connections = FailingConnection.connector()
    port = free_port()
    with (Emulator(store=Store(tmp_path / "h.db", connect=connect), dashboard_port=port) as emu,
          grpc.insecure_channel(emu.address) as channel):
        stub, health = pb_grpc.TaskHubSidecarServiceStub(channel), health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
        writer = connections[0]
        writer.fail_on = "COMMIT"
        with pytest.raises(grpc.RpcError):
            stub.StartInstance(pb.CreateInstanceRequest(name="orch", instanceId="refused"))
        assert writer.failed == ["COMMIT"]  # the precondition: the write was refused
        report = health_json(port)
        assert report["http"] == 503 and report["status"] == "unavailable"
        assert report["store"]["state"] == "UNAVAILABLE" and "disk I/O error" in report["store"]["error"]
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        assert health.Check(health_pb2.HealthCheckRequest(service="TaskHubSidecarService")).status == not_serving
        # The disk takes writes again: the next one that commits clears it.
        stub.StartInstance(pb.CreateInstanceRequest(name="orch", instanceId="accepted"))
        assert health_json(port)["store"]["state"] == "AVAILABLE"
        with pytest.raises(grpc.RpcError) as unknown:
            health.Check(health_pb2.HealthCheckRequest(service="something.Else"))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def post(port: int, path: str, body: dict, origin: str | None = None) -> tuple[int, dict]:
    status, _, answer = request(port, "POST", path, json.dumps(body).encode(), Content_Type="application/json",
                                Origin=origin or f"http://127.0.0.1:{port}", Sec_Fetch_Site="same-origin")
    return status, json.loads(answer)


def test_read_only_refuses_every_action_and_still_reads():
    port = free_port()
    with Emulator(dashboard_port=port, dashboard_read_only=True) as emu:
        emu.on_loop(lambda: emu.backend.create_instance("default", "shown", "orch"))
        status, answer = post(port, "/api/hubs/default/instance/terminate?id=shown", {})
        assert status == 403 and "read-only (--dashboard-read-only)" in answer["error"]
        status, answer = post(port, "/api/hubs/default/entity/signal?id=@counter@a", {"operation": "add"})
        assert status == 403 and "read-only" in answer["error"]
        # The guard's own checks still come first: another origin is refused for that reason.
        status, answer = post(port, "/api/hubs/default/instance/terminate?id=shown", {}, origin="http://evil.test")
        assert status == 403 and "own origin" in answer["error"]
        status, _, body = request(port, "GET", "/api/hubs/default/instance?id=shown")
        assert status == 200 and json.loads(body)["instance"]["status"] == "PENDING"
        assert emu.on_loop(lambda: emu.backend.store.count_messages("default", "orchestration", "shown")) == 1


def test_actions_work_without_read_only():
    """The refusal above is read-only mode's: the same request is applied without it."""
    port = free_port()
    with Emulator(dashboard_port=port) as emu:
        emu.on_loop(lambda: emu.backend.create_instance("default", "changed", "orch"))
        assert post(port, "/api/hubs/default/instance/terminate?id=changed", {})[0] == 200


@pytest.mark.parametrize("path, target", [
    ("/subscriptions/local/schedulers/emulator/taskhubs/default/orchestrations", "/hubs/default/instances"),
    ("/subscriptions/default/schedulers/default/taskhubs/default", "/hubs/default/instances"),
    ("/subscriptions/s/schedulers/x/taskhubs/my%20hub/entities", "/hubs/my%20hub/entities"),
    ("/subscriptions/s/schedulers/x/taskhubs/h/orchestrations/a%2Fb", "/hubs/h/instance?id=a%2Fb"),
    ("/subscriptions/s/schedulers/x/taskhubs/h/entities/@counter@k", "/hubs/h/entity?id=%40counter%40k"),
])
def test_aspire_paths_redirect_to_the_same_page(path, target):
    assert aspire_target(path) == target


def test_aspire_redirect_and_icon_over_http():
    port = free_port()
    with Emulator(dashboard_port=port):
        status, headers, _ = request(port, "GET", "/subscriptions/local/schedulers/emulator/taskhubs/default/"
                                                  "orchestrations?endpoint=x")
        assert status == 302 and headers["location"] == "/hubs/default/instances"
        status, headers, body = request(port, "GET", "/favicon.ico")
        assert status == 200 and headers["content-type"] == "image/x-icon"
        assert body[:4] == b"\x00\x00\x01\x00"  # an ICO file's header
        assert request(port, "GET", "/favicon.ico", host="evil.test")[0] == 403  # still behind the guard
        assert request(port, "GET", "/subscriptions/a/schedulers/b/taskhubs/default", host="evil.test")[0] == 403


@pytest.mark.parametrize("path, target", [
    ("/subscriptions/s/schedulers/x/taskhubs/h/schedules", "/hubs/h/schedules"),
    ("/subscriptions/s/schedulers/x/taskhubs/h/schedules/daily", "/hubs/h/schedule?id=daily"),
])
def test_aspire_schedules_go_to_the_schedules_view(path, target):
    assert aspire_target(path) == target


def test_an_aspire_link_keeps_an_id_that_looks_escaped():
    """The ID "a%41" travels as a%2541: decoded once it stays "a%41" (decoded twice it was "aA")."""
    port = free_port()
    with Emulator(dashboard_port=port):
        path = "/subscriptions/s/schedulers/x/taskhubs/default/orchestrations/a%2541"
        status, headers, _ = request(port, "GET", path)
    assert status == 302 and headers["location"] == "/hubs/default/instance?id=a%2541"


def _post_routes() -> list[str]:
    """Every POST route the dashboard has, as a path with its parameters filled in."""
    from dts_emulator.dashboard import app, listing, operations

    paths = []
    for route in operations.ROUTES + listing.ROUTES + app.ROUTES:
        if "POST" in (getattr(route, "methods", None) or ()):
            path = route.path.replace("{hub}", "default")
            paths += ([path.replace("{action}", a) for a in ("terminate", "suspend", "resume", "purge", "restart",
                                                               "rewind", "raise-event")]
                      if "{action}" in path else [path])
    return paths


def test_read_only_refuses_every_post_route_and_changes_nothing():
    paths = _post_routes()
    assert {"/api/hubs/default/start", "/api/hubs/default/bulk", "/api/hubs/default/entity/signal"} <= set(paths)
    port = free_port()
    with Emulator(dashboard_port=port, dashboard_read_only=True) as emu:
        emu.on_loop(lambda: emu.backend.create_instance("default", "kept", "orch"))
        bodies = {"start": {"name": "orch"}, "bulk": {"action": "terminate", "filter": {}},
                  "signal": {"operation": "add"}, "raise-event": {"name": "go"}}
        for path in paths:
            body = bodies.get(path.rsplit("/", 1)[-1], {})
            status, answer = post(port, f"{path}?id=kept" if "/instance/" in path else
                                  f"{path}?id=@counter@a" if "/entity/" in path else path, body)
            assert status == 403 and "read-only" in answer["error"], (path, answer)
        state = emu.on_loop(lambda: (emu.backend.instance("default", "kept").status,
                                     emu.backend.store.count_messages("default", "orchestration", "kept"),
                                     emu.backend.store.count_instances_by_status("default")))
        assert state == (pb.ORCHESTRATION_STATUS_PENDING, 1, {pb.ORCHESTRATION_STATUS_PENDING: 1})


@pytest.mark.parametrize("path, body", [
    ("/api/hubs/default/start", {"name": "orch", "scheduledStart": "9999-12-31T23:59:59-01:00"}),
    ("/api/hubs/default/start", {"name": "orch", "scheduledStart": "0001-01-01T00:00:00+01:00"}),
    ("/api/hubs/default/bulk", {"action": "purge", "filter": {"from": "0001-01-01T00:00:00+01:00"}}),
    ("/api/hubs/default/instances?to=9999-12-31T23:59:59-01:00", None),
    ("/api/hubs/default/instances/histogram?from=0001-01-01T00:00:00%2B01:00", None),
])
def test_a_time_no_timestamp_can_show_is_400_and_the_list_still_works(path, body):
    """Such a scheduled start was stored, and every list showing it answered 500 from then on."""
    port = free_port()
    with Emulator(dashboard_port=port) as emu:
        emu.on_loop(lambda: emu.backend.create_instance("default", "listed", "orch"))  # something to list
        if body is None:
            status, _, raw = request(port, "GET", path)
            answer = json.loads(raw)
        else:
            status, answer = post(port, path, body)
        assert status == 400 and "between 0001-01-01 and 9999-12-31" in answer["error"], answer
        for listed in ("/api/hubs/default/instances", "/api/hubs/default/instances/histogram"):
            status, _, raw = request(port, "GET", listed)
            assert status == 200, raw
        assert [i["id"] for i in json.loads(request(port, "GET", "/api/hubs/default/instances")[2])["items"]] == [
            "listed"]


def test_bulk_refuses_a_misspelt_filter_and_counts_an_id_once():
    port = free_port()
    with Emulator(dashboard_port=port) as emu:
        for instance_id in ("one", "two"):
            emu.on_loop(lambda i=instance_id: emu.backend.create_instance("default", i, "orch"))
        # A misspelt key used to be ignored: the action then took every instance of the hub.
        status, answer = post(port, "/api/hubs/default/bulk", {"action": "terminate", "filter": {"stauts": "FAILED"}})
        assert status == 400 and "unknown filter 'stauts'" in answer["error"]
        assert post(port, "/api/hubs/default/bulk", {"action": "terminate", "dryRun": True, "filter": {}})[1] == {
            "count": 2, "matched": 2}  # the precondition: an empty filter does match both
        status, answer = post(port, "/api/hubs/default/bulk", {"action": "terminate", "ids": ["one", "one", "one"]})
        assert (status, answer) == (200, {"count": 1, "matched": 1})
        assert emu.on_loop(lambda: emu.backend.store.count_messages("default", "orchestration", "two")) == 1
