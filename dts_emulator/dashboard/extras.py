"""What the dashboard's port answers besides its pages and API: health, the icon, and Aspire's links.

``/healthz``: the emulator's health report as JSON (200 when the store takes writes, 503
when not), for container probes and CI jobs; see ``dts_emulator/health.py``.
``/favicon.ico``: the icon shipped in ``static/``.
``/subscriptions/<s>/schedulers/<s>/taskhubs/<hub>/...``: the paths Aspire links the official
dashboard with, redirected to this dashboard's page for the same hub, list or item.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote, unquote

from starlette.types import ASGIApp, Receive, Scope, Send

from .. import health
from ..backend import Backend

ICON = Path(__file__).parent / "static" / "favicon.ico"
HEALTH_PATH = "/healthz"
READ_METHODS = ("GET", "HEAD")
# The official dashboard's section -> this dashboard's list page, and its item page (?id=).
_SECTIONS = {"orchestrations": ("instances", "instance"), "entities": ("entities", "entity"),
             "schedules": ("schedules", "schedule"), "workers": ("workers", None)}


def aspire_target(path: str) -> str | None:
    """This dashboard's page for an official-dashboard path (URL-encoded, as sent), or None when it is not one."""
    parts = [unquote(p) for p in path.split("/") if p]
    if len(parts) < 6 or parts[0] != "subscriptions" or parts[2] != "schedulers" or parts[4] != "taskhubs":
        return None
    hub, rest = quote(parts[5], safe=""), parts[6:]
    if not rest:
        return f"/hubs/{hub}/instances"
    section = _SECTIONS.get(rest[0])
    if section is None:
        return f"/hubs/{hub}/instances"
    listing, item = section
    if len(rest) > 1 and item is not None:
        return f"/hubs/{hub}/{item}?id={quote('/'.join(rest[1:]), safe='')}"
    return f"/hubs/{hub}/{listing}"


class Extras:
    """ASGI: answers the paths above, passes everything else to ``app``; health only given the uptime."""

    def __init__(self, app: ASGIApp, backend: Backend, uptime: health.Clock | None = None,
                 hosts: frozenset[str] = frozenset()):
        """``hosts``: the Host values the dashboard serves; any other gets the health status alone."""
        self.app, self.backend, self.uptime, self.hosts = app, backend, uptime, hosts
        self.icon = ICON.read_bytes()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in READ_METHODS:
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path == HEALTH_PATH and self.uptime is not None:
            report = health.report(self.backend, self.uptime)
            status = 200 if report["status"] == "ok" else 503
            if [v.lower() for k, v in _headers(scope) if k == b"host"] not in ([h] for h in self.hosts):
                # Any Host may ask (a probe names the pod's address), so a page on a rebound name may too:
                # it learns up or down, not the hubs, the data file's path or the store's error.
                report = {"status": report["status"]}
            return await _answer(send, status, "application/json", json.dumps(report).encode(), scope)
        if path == "/favicon.ico":
            return await _answer(send, 200, "image/x-icon", self.icon, scope, cache=b"public, max-age=86400")
        # The path as sent: ASGI's "path" is decoded already, and decoding it again would change
        # an ID such as "a%41" (sent as a%2541) into "aA".
        target = aspire_target(scope.get("raw_path", path.encode()).decode("latin-1"))
        if target is not None:
            return await _answer(send, 302, "text/plain", b"", scope, ((b"location", target.encode()),))
        await self.app(scope, receive, send)


def _headers(scope: Scope) -> list[tuple[bytes, str]]:
    return [(key, value.decode("latin-1")) for key, value in scope["headers"]]


async def _answer(send: Send, status: int, media: str, body: bytes, scope: Scope,
                  extra: tuple[tuple[bytes, bytes], ...] = (), cache: bytes = b"no-store") -> None:
    headers = [(b"content-type", media.encode()), (b"content-length", str(len(body)).encode()),
               (b"cache-control", cache), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
