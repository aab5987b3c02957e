"""The dashboard against hostile pages: hosts, origins, content types, sizes, JSON and odd IDs.

Raw HTTP (http.client and sockets) sets Host, Origin and Content-Type exactly; a browser
(Debian's Chromium through Playwright) shows that a page on another origin changes nothing.
Every refused change is followed by an allowed one to the same instance or entity, which
is applied after anything the refused ones might have queued: so "nothing changed" is
checked by the value the allowed change leaves, not by waiting.
"""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from functools import partial

import grpc
import pytest
from durabletask import client as dt_client
from durabletask import entities
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc
from durabletask.worker import TaskHubGrpcWorker
from google.protobuf import wrappers_pb2

from dts_emulator.dashboard.guard import MAX_BODY_BYTES
from dts_emulator.dashboard.payload import MAX_DEPTH
from tests.helpers import (
    Emulator,
    InProcessEmulator,
    awaits_approval,
    entity_url,
    free_port,
    instance_url,
    status_of,
    text,
    wait_until,
)
from worker import counter

PROXY_NAMES = ("dash.example.test", "proxy.example.test:8443")
ODD_IDS = ["..", ".", "a/b", "x/terminate", "a/../b", "q?x=1", "h#frag", "p%41", "%", "sp ace", "a+b"]


def read_counter(ctx, key: str):
    return (yield ctx.call_entity(entities.EntityInstanceId("counter", key), "get"))


class Site:
    """An emulator with its dashboard, a worker for counters and approvals, and a client."""

    def __init__(self, tmp_path):
        self.port = free_port()
        self.emulator = Emulator(tmp_path / "s.db", dashboard_port=self.port, hubs="default,idle",
                                 extra=("--dashboard-allow-host", ",".join(PROXY_NAMES))).start()
        self.worker = TaskHubGrpcWorker(host_address=self.emulator.address)
        self.worker.add_entity(counter)
        self.worker.add_orchestrator(awaits_approval)
        self.worker.add_orchestrator(read_counter)
        self.worker.start()
        self.client = dt_client.TaskHubGrpcClient(host_address=self.emulator.address)
        self.origin = f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body: bytes | str | None = None, host: str | None = "",
                **headers: str) -> tuple[int, dict, http.client.HTTPResponse]:
        """One request with exactly these headers (``host=None``: no Host header at all)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            if host is not None:
                conn.putheader("Host", host or f"127.0.0.1:{self.port}")
            for name, value in headers.items():
                conn.putheader(name.replace("_", "-"), value)
            data = body.encode() if isinstance(body, str) else body
            if data is not None:
                conn.putheader("Content-Length", str(len(data)))
            conn.endheaders(data)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            payload = {"text": raw.decode(errors="replace")}
        return response.status, payload, response

    def post(self, path: str, body, **headers: str) -> tuple[int, dict]:
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        status, payload, _ = self.request("POST", path, data, **{"Content_Type": "application/json", **headers})
        return status, payload

    def get(self, path: str, **headers: str) -> tuple[int, dict]:
        status, payload, _ = self.request("GET", path, **headers)
        return status, payload

    def waiting_instance(self, instance_id: str) -> str:
        self.client.schedule_new_orchestration(awaits_approval, instance_id=instance_id)
        self.client.wait_for_orchestration_start(instance_id, timeout=30)
        return instance_id

    def approve_and_get_output(self, instance_id: str, data):
        """Approve through the dashboard's own origin; the instance's output and status tell what it saw first."""
        assert self.post(instance_url(instance_id, "raise-event"), {"name": "approve", "data": data},
                         Origin=self.origin)[0] == 200
        state = self.client.wait_for_orchestration_completion(instance_id, timeout=30)
        return state.runtime_status, state.get_output()

    def counter_after_adding_one(self, key: str) -> int:
        """Add 1 through the dashboard's own origin; the value shows whether anything was added before."""
        assert self.post(entity_url(f"@counter@{key}", "signal"), {"operation": "add", "input": 1},
                         Origin=self.origin)[0] == 200
        # An entity takes its messages in order: a call sent now answers after all of them.
        reader = self.client.schedule_new_orchestration(read_counter, input=key)
        return self.client.wait_for_orchestration_completion(reader, timeout=30).get_output()

    def close(self):
        self.worker.stop()
        self.client.close()
        self.emulator.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = Site(tmp_path_factory.mktemp("security"))
    yield s
    s.close()


# -- hosts (DNS rebinding) -------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LocalHost:{port}", "[::1]:{port}",
                                  *PROXY_NAMES])
def test_served_hosts_read(site, host):
    status, body = site.get("/api/hubs", host=host.format(port=site.port))
    assert status == 200 and body["hubs"][0]["name"] == "default"


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "localhost.evil.example:{port}",
                                  "127.0.0.1", "localhost:{other}", "dash.example.test:{port}",
                                  "proxy.example.test", "127.0.0.1:{port}@evil.example"])
@pytest.mark.parametrize("path", ["/api/hubs", "/", "/static/app.js", "/api/hubs/default/entities"])
def test_other_hosts_get_403_and_no_data(site, host, path):
    status, body, response = site.request("GET", path, host=host.format(port=site.port, other=site.port + 1))
    assert status == 403 and "does not serve host" in body["error"] and "--dashboard-allow-host" in body["error"]
    assert set(body) == {"error"} and response.getheader("content-type") == "application/json"


def test_an_http_1_0_request_without_host_is_refused(site):
    with socket.create_connection(("127.0.0.1", site.port), timeout=15) as s:
        s.sendall(b"GET /api/hubs HTTP/1.0\r\n\r\n")
        response = http.client.HTTPResponse(s)
        response.begin()
        assert response.status == 403 and "does not serve host" in json.loads(response.read())["error"]


@pytest.mark.parametrize("hosts", [[], [b"127.0.0.1:8082", b"evil.example"], [b"evil.example", b"127.0.0.1:8082"]])
def test_the_guard_wants_exactly_one_served_host(hosts):
    """Below the HTTP server (which may refuse these itself): the guard alone decides."""
    import asyncio

    from dts_emulator.dashboard.guard import Guard, served_hosts

    async def app(scope, receive, send):
        raise AssertionError("the app was reached")

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/api/hubs", "headers": [(b"host", h) for h in hosts]}
    asyncio.run(Guard(app, served_hosts("127.0.0.1", 8082))(scope, None, send))
    assert sent[0]["status"] == 403 and b"does not serve host" in sent[1]["body"]


def test_a_rebound_host_cannot_change_anything(site, uid):
    status, body = site.post(entity_url(f"@counter@{uid}", "signal"), {"operation": "add", "input": 1000},
                             host=f"evil.example:{site.port}")
    assert status == 403
    assert site.counter_after_adding_one(uid) == 1


# -- changes: method, content type, origin ------------------------------------------


REFUSED_CHANGES = [
    # (headers, expected status, fragment of the error)
    ({"Content_Type": "text/plain"}, 415, "application/json"),
    ({"Content_Type": "text/plain;charset=UTF-8"}, 415, "application/json"),
    ({"Content_Type": "application/x-www-form-urlencoded"}, 415, "application/json"),
    ({"Content_Type": "multipart/form-data; boundary=x"}, 415, "application/json"),
    ({"Content_Type": "application/jsonx"}, 415, "application/json"),
    ({}, 415, "application/json"),
    ({"Content_Type": "application/json", "Origin": "http://evil.example"}, 403, "own origin"),
    ({"Content_Type": "application/json", "Origin": "null"}, 403, "own origin"),
    ({"Content_Type": "application/json", "Origin": "http://127.0.0.1"}, 403, "own origin"),
    ({"Content_Type": "application/json", "Origin": "http://127.0.0.1:{other}"}, 403, "own origin"),
    ({"Content_Type": "application/json", "Origin": "http://localhost:{port}.evil.example"}, 403, "own origin"),
    ({"Content_Type": "application/json", "Origin": "https://proxy.example.test"}, 403, "own origin"),
    ({"Content_Type": "application/json", "Sec_Fetch_Site": "cross-site"}, 403, "own page"),
    ({"Content_Type": "application/json", "Sec_Fetch_Site": "same-site"}, 403, "own page"),
    ({"Content_Type": "text/plain", "Origin": "http://evil.example", "Sec_Fetch_Site": "cross-site"}, 403, ""),
]


def _format(headers: dict[str, str], site: Site) -> dict[str, str]:
    return {k: v.format(port=site.port, other=site.port + 1) for k, v in headers.items()}


def test_refused_changes_change_nothing(site, uid):
    terminated = site.waiting_instance(f"term-{uid}")
    raised = site.waiting_instance(f"event-{uid}")
    wrong = []
    for headers, expected, fragment in REFUSED_CHANGES:
        h = _format(headers, site)
        for path, body in [(instance_url(terminated, "terminate"), {"reason": "csrf"}),
                           (instance_url(raised, "raise-event"), {"name": "approve", "data": "csrf"}),
                           (entity_url(f"@counter@{uid}", "signal"), {"operation": "add", "input": 1000})]:
            status, payload, _ = site.request("POST", path, json.dumps(body), **h)
            if status != expected or fragment not in payload.get("error", ""):
                wrong.append((h, path, status, payload))
    assert wrong == []
    assert site.approve_and_get_output(terminated, "mine") == (dt_client.OrchestrationStatus.COMPLETED, "mine")
    assert site.approve_and_get_output(raised, "mine") == (dt_client.OrchestrationStatus.COMPLETED, "mine")
    assert site.counter_after_adding_one(uid) == 1


@pytest.mark.parametrize("headers", [
    {"Origin": "http://127.0.0.1:{port}"},
    {"Origin": "http://localhost:{port}"},
    {"Origin": "http://[::1]:{port}"},
    {"Origin": "https://dash.example.test"},
    {"Origin": "http://proxy.example.test:8443"},
    {"Sec_Fetch_Site": "same-origin", "Origin": "http://localhost:{port}"},
    {},  # scripts and curl send no Origin
])
@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"])
def test_json_from_the_dashboards_own_origin_changes_state(site, uid, headers, content_type):
    status, body = site.post(entity_url(f"@counter@{uid}", "signal"), {"operation": "add", "input": 5},
                             Content_Type=content_type, **_format(headers, site))
    assert (status, body) == (200, {"ok": True})
    assert site.counter_after_adding_one(uid) == 6


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"])
def test_other_methods_are_refused(site, method):
    status, body, response = site.request(method, "/api/hubs/default/entity/signal?id=%40counter%40k", "{}",
                                          Content_Type="application/json", Origin="http://evil.example",
                                          Access_Control_Request_Method="POST")
    assert status == 405 and "GET, HEAD and POST" in body["error"]
    assert response.getheader("access-control-allow-origin") is None


# -- body size ----------------------------------------------------------------------


def answer_to_declared_body(site, length: int) -> tuple[int, dict]:
    """The answer to a POST's headers alone, declaring a body of ``length`` bytes that is never sent.

    The guard refuses a declared size over the limit from the headers and closes the connection,
    so a client that went on to write the body could meet a closed socket (BrokenPipeError).
    """
    with socket.create_connection(("127.0.0.1", site.port), timeout=15) as s:
        s.sendall(f"POST /api/hubs/default/entity/signal?id=%40counter%40big HTTP/1.1\r\n"
                  f"Host: 127.0.0.1:{site.port}\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {length}\r\n\r\n".encode())
        response = http.client.HTTPResponse(s)
        response.begin()  # answered with none of the body sent
        return response.status, json.loads(response.read())


def test_a_declared_40_mb_body_is_refused_before_it_is_sent(site):
    status, payload = answer_to_declared_body(site, 40 * 1024 * 1024)
    assert status == 413 and f"{MAX_BODY_BYTES} bytes" in payload["error"]


def test_a_chunked_body_is_cut_off_at_the_limit(site, uid):
    with socket.create_connection(("127.0.0.1", site.port), timeout=15) as s:
        s.sendall(f"POST /api/hubs/default/entity/signal?id=%40counter%40{uid} HTTP/1.1\r\n"
                  f"Host: 127.0.0.1:{site.port}\r\nContent-Type: application/json\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n".encode())
        chunk = b" " * 65536
        s.sendall(b'20\r\n{"operation": "add", "input": 1}\r\n')
        for _ in range(MAX_BODY_BYTES // len(chunk) + 1):  # just past the limit; the body never ends
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        response = http.client.HTTPResponse(s)
        response.begin()
        assert response.status == 413 and "limit" in json.loads(response.read())["error"]
    assert site.counter_after_adding_one(uid) == 1


def test_a_body_at_the_limit_is_read_and_parsed(site):
    body = json.dumps({"operation": 5, "pad": ""})
    body = body.replace('""', '"' + "x" * (MAX_BODY_BYTES - len(body)) + '"')
    assert len(body) == MAX_BODY_BYTES
    status, payload = site.post(entity_url("@counter@limit", "signal"), body)
    assert status == 400 and "'operation' is required" in payload["error"]
    status, payload = answer_to_declared_body(site, MAX_BODY_BYTES + 1)  # one byte more is refused unread
    assert status == 413 and f"{MAX_BODY_BYTES} bytes" in payload["error"]


# -- JSON the dashboard accepts ---------------------------------------------------------


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("body, fragment", [
    ('{"operation": "add", "input": ' + _nested(100_000) + "}", "nested deeper than"),
    ('{"operation": "add", "input": ' + _nested(MAX_DEPTH) + "}", f"nested deeper than {MAX_DEPTH}"),
    ('{"operation": "add", "input": NaN}', "NaN is not a JSON value"),
    ('{"operation": "add", "input": Infinity}', "Infinity is not a JSON value"),
    ('{"operation": "add", "input": -Infinity}', "-Infinity is not a JSON value"),
    ('{"operation": "add", "input": 1e999}', "too large"),
    ('{"operation": "add", "input": "\\ud800"}', "lone surrogate"),
    ('{"operation": "add", "\\udfff": 1}', "lone surrogate"),
    ('{"operation": "a\\u0000b"}', "control characters"),
    ('{"operation": "' + "a" * 257 + '"}', "the limit is 256"),
    (b'{"operation": "\xff"}', "not JSON"),
])
def test_json_the_dashboard_could_not_show_again_is_400(site, uid, body, fragment):
    status, payload = site.post(entity_url(f"@counter@{uid}", "signal"), body, Origin=site.origin)
    assert status == 400 and fragment in payload["error"], payload
    assert site.counter_after_adding_one(uid) == 1


def test_event_data_with_nan_is_400_and_not_raised(site, uid):
    instance_id = site.waiting_instance(f"nan-{uid}")
    status, payload = site.post(instance_url(instance_id, "raise-event"), '{"name": "approve", "data": NaN}')
    assert status == 400 and "NaN" in payload["error"]
    assert site.approve_and_get_output(instance_id, 1) == (dt_client.OrchestrationStatus.COMPLETED, 1)


def test_what_the_dashboard_accepts_it_shows_again(site, uid):
    value = {"deep": json.loads(_nested(MAX_DEPTH - 2)), "text": "é \u2028 <b>x</b> \U0001f600", "big": 1e300,
             "int": 2**62}
    instance_id = site.waiting_instance(f"show-{uid}")
    assert site.post(instance_url(instance_id, "raise-event"), {"name": "approve", "data": value})[0] == 200
    assert site.client.wait_for_orchestration_completion(instance_id, timeout=30).get_output() == value
    status, body = site.get(instance_url(instance_id))
    assert status == 200 and body["instance"]["output"] == value
    assert [e["payload"] for e in body["history"] if e["kind"] == "eventRaised"] == [value]
    # A queued signal's input shows too: in a task hub no worker serves, it stays queued.
    assert site.post(entity_url(f"@counter@{uid}", "signal", "idle"), {"operation": "add", "input": value})[0] == 200
    status, body = site.get(entity_url(f"@counter@{uid}", hub="idle"))
    assert status == 200 and body["pending"][0]["input"] == value


def test_stored_payloads_that_are_not_strict_json_are_shown_as_text(site, uid):
    """Workers and clients may store NaN, lone surrogates or deep nesting; the views still answer."""
    later = datetime.now(timezone.utc) + timedelta(days=1)  # never dispatched: no worker decodes them
    nan_id = site.client.schedule_new_orchestration("unregistered", input={"x": float("nan")},
                                                    instance_id=f"nan-{uid}", start_at=later)
    surrogate_id = site.client.schedule_new_orchestration("unregistered", input="\ud800", instance_id=f"sur-{uid}",
                                                          start_at=later)
    with grpc.insecure_channel(site.emulator.address) as channel:
        stub = pb_grpc.TaskHubSidecarServiceStub(channel)
        deep_id = f"deep-{uid}"
        start = pb.CreateInstanceRequest(instanceId=deep_id, name="unregistered",
                                         input=wrappers_pb2.StringValue(value=_nested(100_000)))
        start.scheduledStartTimestamp.FromDatetime(later)
        stub.StartInstance(start)
    assert site.get(instance_url(nan_id))[1]["instance"]["input"] == '{"x": NaN}'
    assert site.get(instance_url(surrogate_id))[1]["instance"]["input"] == "\ud800"
    assert site.get(instance_url(deep_id))[1]["instance"]["input"] == _nested(100_000)
    status, listing = site.get(f"/api/hubs/default/instances?q={uid}")
    assert status == 200 and {nan_id, surrogate_id, deep_id} <= {i["id"] for i in listing["items"]}


# -- odd IDs ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def odd_instances(site):
    """Instances whose IDs browsers and routers mangle, created through the SDK (gRPC)."""
    for instance_id in ODD_IDS:
        site.waiting_instance(instance_id)
    return ODD_IDS


def test_odd_instance_ids_open_in_the_api_and_take_actions(site, odd_instances):
    for instance_id in odd_instances:
        status, body = site.get(instance_url(instance_id))
        assert status == 200 and body["instance"]["id"] == instance_id, instance_id
        assert site.post(instance_url(instance_id, "suspend"), {})[0] == 200
        wait_until(lambda: site.get(instance_url(instance_id))[1]["instance"]["status"] == "SUSPENDED",  # noqa: B023
                   message=f"{instance_id} suspended")
        assert site.post(instance_url(instance_id, "resume"), {})[0] == 200
        wait_until(lambda: site.get(instance_url(instance_id))[1]["instance"]["status"] == "RUNNING",  # noqa: B023
                   message=f"{instance_id} resumed")
    # One form of each route: the ID in the path is not another way in.
    assert site.get("/api/hubs/default/instances/" + urllib.parse.quote(odd_instances[0], safe=""))[0] == 404


def test_an_entity_id_of_any_form_can_be_looked_up(site):
    status, body = site.get(entity_url("not-an-entity"))
    assert status == 404 and "no entity 'not-an-entity'" in body["error"]
    status, body = site.post(entity_url("not-an-entity", "signal"), {"operation": "add"})
    assert status == 400 and "'@<name>@<key>'" in body["error"]


def test_odd_entity_keys_open_and_take_signals(site, uid):
    for key in ["..", ".", f"a/b?c#d%e-{uid}"]:
        entity_id = f"@counter@{key}"
        assert site.post(entity_url(entity_id, "signal"), {"operation": "add", "input": 2})[0] == 200
        wait_until(lambda: site.get(entity_url(entity_id))[1].get("entity", {}).get("state") == 2,  # noqa: B023
                   message=f"entity {entity_id}")


# -- response headers -------------------------------------------------------------------


@pytest.mark.parametrize("method, path, host", [
    ("GET", "/", ""), ("GET", "/static/app.js", ""), ("GET", "/api/hubs", ""),
    ("GET", "/api/hubs/nope/instances", ""), ("GET", "/api/hubs", "evil.example"), ("DELETE", "/", ""),
])
def test_every_response_has_the_security_headers(site, method, path, host):
    _, _, response = site.request(method, path, host=host)
    csp = response.getheader("content-security-policy")
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response.getheader("x-content-type-options") == "nosniff"
    assert response.getheader("x-frame-options") == "DENY"
    assert response.getheader("referrer-policy") == "no-referrer"


# -- in a browser (fixtures: conftest.py) -------------------------------------------------

ATTACK_PAGE = """<!doctype html>
<title>a page on another origin</title>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe><iframe name="sink3"></iframe>
<form id="f1" target="sink1" method="post" action="{terminate}">
  <input name="reason" value="csrf"></form>
<form id="f2" target="sink2" method="post" enctype="text/plain" action="{signal}">
  <input name='{{"operation": "add", "input": 1000000, "x": "' value='"}}'></form>
<form id="f3" target="sink3" method="post" enctype="multipart/form-data" action="{event}">
  <input name="name" value="approve"><input name="data" value="csrf"></form>
<script>
const requests = [
  ["{terminate}", {{reason: "csrf"}}],
  ["{signal}", {{operation: "add", input: 1000000}}],
  ["{event}", {{name: "approve", data: "csrf"}}],
];
for (const form of document.forms) form.submit();
window.outcomes = [];
window.done = (async () => {{
  for (const [url, body] of requests) {{
    const text = JSON.stringify(body);
    try {{
      const r = await fetch(url, {{method: "POST", mode: "no-cors", body: text,
                                   headers: {{"content-type": "text/plain"}}}});
      window.outcomes.push(["no-cors", r.type]);
    }} catch (e) {{ window.outcomes.push(["no-cors", "error " + e]); }}
    try {{
      const r = await fetch(url, {{method: "POST", headers: {{"content-type": "application/json"}}, body: text}});
      window.outcomes.push(["json", r.status]);
    }} catch (e) {{ window.outcomes.push(["json", "error " + e]); }}
  }}
  return window.outcomes;
}})();
</script>
"""

SAME_ORIGIN_SCRIPT = """async (requests) => {
  const statuses = [];
  for (const [url, body] of requests) {
    const r = await fetch(url, {method: "POST", headers: {"content-type": "application/json"},
                                body: JSON.stringify(body)});
    statuses.push(r.status);
  }
  return statuses;
}"""


@pytest.fixture
def other_origin(tmp_path):
    """A second local web server, on another port: the hostile page's origin."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             partial(http.server.SimpleHTTPRequestHandler, directory=tmp_path))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def _attack_urls(site: Site, instance_id: str, key: str) -> dict[str, str]:
    return {"terminate": site.origin + instance_url(instance_id, "terminate"),
            "signal": site.origin + entity_url(f"@counter@{key}", "signal"),
            "event": site.origin + instance_url(instance_id, "raise-event")}


@pytest.mark.slow
def test_a_page_on_another_origin_changes_nothing(site, page, other_origin, uid):
    folder, attacker = other_origin
    # Precondition: the same requests from the dashboard's own origin do change things.
    own = site.waiting_instance(f"own-{uid}")
    urls = _attack_urls(site, own, f"own-{uid}")
    page.goto(site.origin + "/")
    assert page.evaluate(SAME_ORIGIN_SCRIPT, [[urls["signal"], {"operation": "add", "input": 1000000}],
                                              [urls["event"], {"name": "approve", "data": "csrf"}]]) == [200, 200]
    assert site.client.wait_for_orchestration_completion(own, timeout=30).get_output() == "csrf"
    assert site.counter_after_adding_one(f"own-{uid}") == 1000001
    own_terminated = site.waiting_instance(f"own-t-{uid}")
    assert page.evaluate(SAME_ORIGIN_SCRIPT, [[site.origin + instance_url(own_terminated, "terminate"),
                                               {"reason": "csrf"}]]) == [200]
    state = site.client.wait_for_orchestration_completion(own_terminated, timeout=30)
    assert state.runtime_status == dt_client.OrchestrationStatus.TERMINATED

    # The attack: forms (urlencoded, text/plain, multipart), no-cors fetch, and a preflighted JSON fetch.
    target = site.waiting_instance(f"target-{uid}")
    (folder / "attack.html").write_text(ATTACK_PAGE.format(**_attack_urls(site, target, uid)))
    refusals = site.emulator.process.output.count("dashboard refused")
    page.goto(f"{attacker}/attack.html")
    outcomes = page.evaluate("window.done")
    assert [kind for kind, _ in outcomes] == ["no-cors", "json"] * 3
    # A no-cors fetch's answer is opaque, or withheld by Cross-Origin-Resource-Policy; JSON fails its preflight.
    assert all(result == "opaque" or "Failed to fetch" in result for kind, result in outcomes if kind == "no-cors")
    assert all("Failed to fetch" in str(result) for kind, result in outcomes if kind == "json")
    # The forms were answered before the checks below: their frames left about:blank (for the
    # dashboard's reply, or for an error page, as the dashboard forbids framing).
    wait_until(lambda: page.evaluate("true") and all(f.url != "about:blank" for f in page.main_frame.child_frames),
               message="the forms' answers")
    assert site.approve_and_get_output(target, "mine") == (dt_client.OrchestrationStatus.COMPLETED, "mine")
    assert site.counter_after_adding_one(uid) == 1
    # Each form and each no-cors fetch reached the dashboard and was refused there; each preflight too.
    wait_until(lambda: site.emulator.process.output.count("dashboard refused") - refusals >= 9,
               message="the dashboard's refusals")
    log = site.emulator.process.output.split("\n")
    refused = [line.split("refused ", 1)[1].split(" ", 1)[0] for line in log if "dashboard refused" in line]
    assert sorted(refused[refusals:]) == ["OPTIONS"] * 3 + ["POST"] * 6


@pytest.mark.slow
def test_a_rebound_name_in_a_browser_reads_and_changes_nothing(site, chromium, uid):
    """DNS rebinding: the attacker's name now resolves to 127.0.0.1, so its page shares the API's origin."""
    rebound = chromium("--host-resolver-rules=MAP rebind.test 127.0.0.1")
    page = rebound.new_page()
    origin = f"http://rebind.test:{site.port}"
    response = page.goto(origin + "/")
    assert response.status == 403 and "rebind.test" in response.json()["error"]
    read = page.evaluate("async () => (await fetch('/api/hubs')).status")
    change = page.evaluate("""async (url) => (await fetch(url, {
        method: "POST", headers: {"content-type": "application/json"},
        body: JSON.stringify({operation: "add", input: 9}),
    })).status""",
                           entity_url(f"@counter@{uid}", "signal"))
    assert (read, change) == (403, 403)
    page.goto(site.origin + "/")  # the same requests through a name the dashboard serves work
    assert page.evaluate("async () => (await fetch('/api/hubs')).status") == 200
    assert site.counter_after_adding_one(uid) == 1


@pytest.mark.slow
def test_the_page_opens_and_acts_on_odd_instance_ids(site, page, odd_instances):
    for instance_id in odd_instances:
        page.goto(site.origin + "/hubs/default/instances?page_size=200")
        page.locator(f"tr[data-instance={json.dumps(instance_id)}] td.id a").click()
        playwright_expect(page.locator("h1")).to_have_text(instance_id)
        playwright_expect(page.locator("#status")).to_have_text("RUNNING")
        page.fill("input[name=event]", "approve")
        page.fill("input[name=data]", json.dumps(instance_id))
        page.click("button:has-text('Raise event')")
        state = site.client.wait_for_orchestration_completion(instance_id, timeout=30)
        assert state.get_output() == instance_id
        page.reload()
        playwright_expect(page.locator("#status")).to_have_text("COMPLETED")


def playwright_expect(locator):
    from playwright.sync_api import expect

    return expect(locator)


def test_served_hosts_follow_the_listening_address_and_port():
    from dts_emulator.dashboard.guard import served_hosts

    assert served_hosts("127.0.0.1", 8082) == {"localhost:8082", "127.0.0.1:8082", "[::1]:8082"}
    assert {"[::]:9000", "localhost:9000"} <= served_hosts("::", 9000)
    assert "0.0.0.0:8082" in served_hosts("0.0.0.0", 8082)
    assert {"localhost", "127.0.0.1:80"} <= served_hosts("127.0.0.1", 80)  # port 80 is left out of Host
    assert served_hosts("127.0.0.1", 8082, ["Dash.Example.test"]) >= {"dash.example.test"}


def test_allowed_host_flag_takes_lists_and_refuses_urls():
    from dts_emulator.cli import parse_args

    args = parse_args(["--dashboard-allow-host", "a.example", "--dashboard-allow-host", "B.example:8443,::1"])
    assert args.dashboard_allow_host == ["a.example", "b.example:8443", "[::1]"]
    for bad in ["http://a.example", "a.example/x", "a b", "a.example:port", "user@a.example"]:
        with pytest.raises(SystemExit) as exit_info:
            parse_args(["--dashboard-allow-host", bad])
        assert exit_info.value.code == 2


# -- what the gRPC side accepts, the dashboard shows and acts on ---------------------------

GRPC_ODD_IDS = ["..", ".", "a/b", "../../etc/passwd", "?x=1&y=2", "%2e%2e", "#frag", "ünïcødé", "back\\slash",
                " space "]
ODD_INPUTS = ["NaN", "Infinity", "{not json", "[" * 100_000 + "]" * 100_000]


@pytest.fixture
def dash():
    emu = InProcessEmulator(None, dashboard_port=free_port()).start()
    yield emu
    emu.stop()


def dashboard_call(emu, method: str, path: str, **params) -> tuple[int, dict]:
    url = f"{emu.dashboard}{path}?{urllib.parse.urlencode(params)}"
    request = urllib.request.Request(url, data=b"{}" if method == "POST" else None, method=method,
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def test_whatever_is_accepted_the_dashboard_shows_and_acts_on(dash):
    """Odd but valid IDs and keys, and inputs that are not strict JSON (DTS payloads are opaque strings)."""
    channel = grpc.insecure_channel(dash.address)
    stub = pb_grpc.TaskHubSidecarServiceStub(channel)
    try:
        for n, instance_id in enumerate(GRPC_ODD_IDS):
            stub.StartInstance(pb.CreateInstanceRequest(instanceId=instance_id, name="orch",
                                                        input=text(ODD_INPUTS[n % len(ODD_INPUTS)])))
            stub.SignalEntity(pb.SignalEntityRequest(instanceId=f"@c@{instance_id}", name="add", requestId="r",
                                                     input=text(ODD_INPUTS[n % len(ODD_INPUTS)])))
        for n, instance_id in enumerate(GRPC_ODD_IDS):
            code, body = dashboard_call(dash, "GET", "/api/hubs/default/instance", id=instance_id)
            assert code == 200, (instance_id, body)
            assert body["instance"]["id"] == instance_id
            assert body["instance"]["input"] == ODD_INPUTS[n % len(ODD_INPUTS)]  # shown as its text
            code, body = dashboard_call(dash, "GET", "/api/hubs/default/entity", id=f"@c@{instance_id}")
            assert code == 200 and len(body["pending"]) == 1, (instance_id, body)
            code, body = dashboard_call(dash, "POST", "/api/hubs/default/instance/terminate", id=instance_id)
            assert code == 200, (instance_id, body)
            assert status_of(stub, instance_id).orchestrationStatus == pb.ORCHESTRATION_STATUS_TERMINATED
            code, body = dashboard_call(dash, "POST", "/api/hubs/default/instance/purge", id=instance_id)
            assert code == 200, (instance_id, body)
        assert not stub.QueryInstances(pb.QueryInstancesRequest()).orchestrationState
    finally:
        channel.close()


def test_a_foreign_page_cannot_make_the_dashboard_api_work_for_it():
    port = free_port()
    emu = InProcessEmulator(None, dashboard_port=port).start()
    try:
        request = urllib.request.Request(f"{emu.dashboard}/api/hubs", headers={
            "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request)
        assert refused.value.code == 403
    finally:
        emu.stop()
