"""Who may talk to the dashboard: ASGI middleware in front of every route.

Anything listening on localhost is reachable from every web page the user opens, so
the dashboard answers only requests that name a host it serves (which defeats DNS
rebinding), changes state only for a JSON POST from its own origin (which defeats
cross-site forms and ``fetch``), caps request bodies, and sends headers that keep its
page from being framed or fed foreign code. Refusals are JSON, like every API error,
and happen before a body is read.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("dts_emulator.dashboard")

MAX_BODY_BYTES = 1024 * 1024
"""The largest request body the dashboard reads; its own requests are a few hundred bytes."""

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
ALLOWED_METHODS = frozenset({"GET", "HEAD", "POST"})
# Sec-Fetch-Site values a browser sends for a request the dashboard's own page made
# (or one the user typed); "same-site" is another port on the same host, and is refused.
OWN_FETCH_SITES = frozenset({"same-origin", "none"})

SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
     b"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]

_NAME = re.compile(r"(?:[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?\.?)+|\[[0-9a-f:.]+\]")
_HOST = re.compile(rf"(?P<name>{_NAME.pattern})(?::(?P<port>[0-9]{{1,5}}))?")


def bracketed(host: str) -> str:
    """An address as it appears in a Host header: IPv6 literals in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def check_host_name(text: str) -> str:
    """A ``--dashboard-allow-host`` value: a host name or address, optionally with ``:PORT``."""
    value = bracketed(text.strip().lower()) if text.count(":") > 1 else text.strip().lower()
    if not _HOST.fullmatch(value):
        raise ValueError(f"'{text}' is not a host name, optionally with :PORT (e.g. dash.example.com:8443)")
    return value


def served_hosts(host: str, port: int, extra: Iterable[str] = ()) -> frozenset[str]:
    """Every Host header value (``name[:port]``) the dashboard answers.

    Loopback names and the address it listens on count with its port (and alone on port
    80); extra names, for a proxy in front, count exactly as given: ``name`` alone for a
    proxy on the default port, ``name:port`` otherwise.
    """
    names = {*LOOPBACK_NAMES, bracketed(host.lower())}
    served = {f"{name}:{port}" for name in names}
    if port == 80:
        served |= names
    return frozenset(served | {check_host_name(name) for name in extra})


def _header(scope: Scope, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in scope["headers"] if key == name]


def _origin_authority(origin: str) -> str | None:
    """``host[:port]`` of an http(s) Origin header, or None for anything else (e.g. ``null``)."""
    match = re.fullmatch(r"(https?)://([^/?#@\s]+)", origin.strip().lower())
    if not match:
        return None
    scheme, authority = match.groups()
    default = ":443" if scheme == "https" else ":80"
    return authority.removesuffix(default)


class Guard:
    """Refuses what the dashboard must not answer; passes the rest to ``app``."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str], max_body: int = MAX_BODY_BYTES, read_only: bool = False,
                 open_paths: frozenset[str] = frozenset()):
        """``read_only``: every change refused; ``open_paths``: GET paths any Host may read (the health report)."""
        self.app, self.hosts, self.max_body = app, hosts, max_body
        self.read_only, self.open_paths = read_only, open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        send = _with_security_headers(send)
        refusal = self.refusal(scope)
        if refusal is None and scope["method"] == "POST":
            try:
                body = await _read_body(receive, self.max_body)
            except _ClientGone:
                return  # nothing to answer, and a partial body must not act
            if body is None:
                refusal = 413, f"the request body is larger than the dashboard's limit of {self.max_body} bytes"
            else:
                receive = _replay(body, receive)
        if refusal is not None:
            status, message = refusal
            log.info("dashboard refused %s %s: %s", scope["method"], scope["path"], message)
            return await _refuse(send, status, message)
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        """(status, reason) when the request must not reach the app; None when it may."""
        method = scope["method"]
        if method not in ALLOWED_METHODS:
            return 405, f"method {method} is not allowed; the dashboard answers GET, HEAD and POST"
        if method in ("GET", "HEAD") and scope["path"] in self.open_paths:
            return None  # a probe names the pod's address, not a served host; the answer is not secret
        hosts = _header(scope, b"host")
        if len(hosts) != 1 or hosts[0].lower() not in self.hosts:
            named = hosts[0] if len(hosts) == 1 else f"{len(hosts)} Host headers"
            return 403, (f"the dashboard does not serve host '{named}'; "
                         "add it with --dashboard-allow-host if a proxy forwards it")
        lengths = _header(scope, b"content-length")
        if lengths and (not lengths[0].isdigit() or int(lengths[0]) > self.max_body):
            return 413, f"the request body is larger than the dashboard's limit of {self.max_body} bytes"
        if method == "POST":
            refused = self._change_refusal(scope)
            if refused is None and self.read_only:
                return 403, ("the dashboard is read-only (--dashboard-read-only): it shows instances and entities "
                             "but changes nothing")
            return refused
        sites = _header(scope, b"sec-fetch-site")
        if scope["path"].startswith("/api/") and sites and sites[0].lower() not in OWN_FETCH_SITES:
            # An <img> or <script> on another page must not make the dashboard do work for it.
            return 403, f"the dashboard's API answers only its own page, not a {sites[0]} page"
        return None

    def _change_refusal(self, scope: Scope) -> tuple[int, str] | None:
        """A state change must come from the dashboard's own page, as JSON."""
        sites = _header(scope, b"sec-fetch-site")
        if sites and sites[0].lower() not in OWN_FETCH_SITES:
            return 403, f"changes are accepted only from the dashboard's own page, not from a {sites[0]} page"
        origins = _header(scope, b"origin")
        if len(origins) > 1 or (origins and _origin_authority(origins[0]) not in self.hosts):
            return 403, f"changes are accepted only from the dashboard's own origin, not from '{origins[0]}'"
        types = _header(scope, b"content-type")
        media = types[0].split(";", 1)[0].strip().lower() if len(types) == 1 else None
        if media != "application/json":
            return 415, "a change needs a JSON body with 'Content-Type: application/json'"
        return None


def _with_security_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            present = {name.lower() for name, _ in headers}  # an inner guard (dashboard/server.py) added them
            message = {**message, "headers": [*headers, *(h for h in SECURITY_HEADERS if h[0] not in present)]}
        await send(message)
    return sending


class _ClientGone(Exception):
    pass


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes ``limit`` (the rest is never read)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then waits as the server's does."""
    sent = False

    async def replaying() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replaying


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]  # an unread body must not be taken for the next request
    if status == 405:
        headers.append((b"allow", b"GET, HEAD, POST"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
