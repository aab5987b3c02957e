"""Where the scheduler is and how to authenticate, for both worker.py and client.py.

Read, in order: ``DURABLE_TASK_SCHEDULER_CONNECTION_STRING`` (the format the other
DTS SDKs accept), else ``ENDPOINT`` and ``TASKHUB``. The endpoint's scheme decides
the rest: ``http://`` is a plain channel with no credential (the emulators);
``https://`` is TLS with a Microsoft Entra ID credential (Azure). Also how both stop in a
container (Lifecycle, the last section).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

DEFAULT_ENDPOINT = "http://localhost:8080"
DEFAULT_TASKHUB = "default"
CONNECTION_STRING_VARIABLE = "DURABLE_TASK_SCHEDULER_CONNECTION_STRING"
# The worker's limit per kind of work item; infra/ sets it to its scale rule's per-replica figure.
CONCURRENCY_VARIABLE = "WORKER_MAX_CONCURRENT_WORK_ITEMS"

# Accepted Authentication= values, lower-cased, with the credential each selects.
AUTHENTICATION_TYPES = {
    "none": None,
    "defaultazure": "DefaultAzureCredential",
    "managedidentity": "ManagedIdentityCredential",
    "workloadidentity": "WorkloadIdentityCredential",
    "environment": "EnvironmentCredential",
    "azurecli": "AzureCliCredential",
}
_CONNECTION_KEYS = {"endpoint", "taskhub", "authentication", "clientid"}


class SettingsError(ValueError):
    """A configuration value is malformed; the message names it and what is accepted."""


@dataclass(frozen=True)
class Settings:
    endpoint: str
    taskhub: str
    authentication: str  # a key of AUTHENTICATION_TYPES
    client_id: str | None = None
    max_concurrent_work_items: int | None = None  # None: the SDK's default

    @property
    def secure_channel(self) -> bool:
        return self.endpoint.startswith("https://")

    @property
    def auth_mode(self) -> str:
        """A loggable description of the credential (never a secret)."""
        if self.authentication == "none":
            return "none (local emulator)"
        mode = AUTHENTICATION_TYPES[self.authentication]
        return f"{mode} (client id {self.client_id})" if self.client_id else mode

    def answers(self, timeout: float, wait: bool = False) -> bool:
        """Whether something accepts gRPC connections at the endpoint within ``timeout`` seconds.

        At a plain ``http://`` endpoint a refused TCP connection means nothing listens: that is a
        quick no, or with ``wait`` (for a scheduler that is starting) a retry 50 ms later, instead
        of gRPC's reconnect back-off of a second or more. ``https://`` endpoints are left to gRPC
        alone, as it may reach them through a proxy where a direct connection is refused.
        """
        import grpc

        deadline = time.monotonic() + timeout
        address = self.endpoint.split("://", 1)[1]
        if not self.secure_channel:
            parts = urlsplit(self.endpoint)
            while True:
                try:
                    socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout).close()
                    break
                except OSError:
                    if not wait or time.monotonic() >= deadline:
                        return False
                    time.sleep(0.05)
        channel = (grpc.secure_channel(address, grpc.ssl_channel_credentials()) if self.secure_channel
                   else grpc.insecure_channel(address))
        try:
            grpc.channel_ready_future(channel).result(timeout=max(deadline - time.monotonic(), 0.1))
            return True
        except grpc.FutureTimeoutError:
            return False
        finally:
            channel.close()

    def concurrency_options(self):
        """The worker's ConcurrencyOptions: the same limit for orchestrations, activities and entities."""
        if self.max_concurrent_work_items is None:
            return None
        from durabletask.worker import ConcurrencyOptions

        limit = self.max_concurrent_work_items
        return ConcurrencyOptions(maximum_concurrent_activity_work_items=limit,
                                  maximum_concurrent_orchestration_work_items=limit,
                                  maximum_concurrent_entity_work_items=limit)

    def credential(self):
        """The azure-identity credential to use, or None for a local emulator."""
        kind = AUTHENTICATION_TYPES[self.authentication]
        if kind is None:
            return None
        import azure.identity as identity

        if kind == "ManagedIdentityCredential":
            return identity.ManagedIdentityCredential(client_id=self.client_id)
        if kind == "DefaultAzureCredential" and self.client_id:
            return identity.DefaultAzureCredential(managed_identity_client_id=self.client_id)
        return getattr(identity, kind)()


def parse_connection_string(text: str) -> dict[str, str]:
    """``Key=Value;Key=Value`` with case-insensitive keys; values may contain '='."""
    values: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise SettingsError(f"connection string part '{part.strip()}' is not of the form Key=Value")
        if key not in _CONNECTION_KEYS:
            raise SettingsError(
                f"connection string key '{key}' is not supported; use Endpoint, TaskHub, Authentication, ClientID"
            )
        values[key] = value.strip()
    if "endpoint" not in values:
        raise SettingsError("connection string has no Endpoint=...")
    return values


def _check_endpoint(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            f"endpoint '{endpoint}' is not a URL like http://localhost:8080 or https://<scheduler>.<region>.durabletask.io"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise SettingsError(f"endpoint '{endpoint}' has an invalid port") from None
    return endpoint.rstrip("/")


def _check_authentication(value: str) -> str:
    key = value.strip().lower()
    if key not in AUTHENTICATION_TYPES:
        accepted = "None, DefaultAzure, ManagedIdentity, WorkloadIdentity, Environment, AzureCli"
        raise SettingsError(f"Authentication '{value}' is not supported; use one of: {accepted}")
    return key


def _check_concurrency(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit < 1:
        raise SettingsError(f"{CONCURRENCY_VARIABLE} '{value}' is not a whole number of 1 or more")
    return limit


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Resolve the settings from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    concurrency = _check_concurrency(env.get("WORKER_MAX_CONCURRENT_WORK_ITEMS"))
    connection_string = env.get(CONNECTION_STRING_VARIABLE, "").strip()
    if connection_string:
        values = parse_connection_string(connection_string)
        endpoint = _check_endpoint(values["endpoint"])
        default_auth = "DefaultAzure" if endpoint.startswith("https://") else "None"
        return Settings(
            endpoint=endpoint,
            taskhub=values.get("taskhub") or DEFAULT_TASKHUB,
            authentication=_check_authentication(values.get("authentication") or default_auth),
            client_id=values.get("clientid") or None,
            max_concurrent_work_items=concurrency,
        )
    endpoint = _check_endpoint(env.get("ENDPOINT") or DEFAULT_ENDPOINT)
    client_id = env.get("AZURE_MANAGED_IDENTITY_CLIENT_ID") or None
    if endpoint.startswith("http://"):
        authentication = "none"  # the emulators take no credential
    elif client_id:
        authentication = "managedidentity"
    else:
        authentication = "defaultazure"
    return Settings(endpoint, env.get("TASKHUB") or DEFAULT_TASKHUB, authentication, client_id, concurrency)


# -- Running in a container --------------------------------------------------------------------
# Starting and stopping inside a container: signals, a bounded stop, and health endpoints for probes.
#
# Container Apps stops a replica with SIGTERM and kills it when its grace period
# (``terminationGracePeriodSeconds`` in infra/resources.bicep) runs out. A client round can wait
# 60 s per orchestration and the SDK worker's stop waits for work items without a limit, so after
# the first SIGTERM or Ctrl-C each process gets STOP_SECONDS to finish what it is doing, then exits
# with a warning: the scheduler hands unfinished work items to another worker, and a cut-short demo
# round changes nothing the next round needs. A second signal exits at once.
#
# Container Apps probes over HTTP or TCP only, and neither process has a port, so with HEALTH_PORT
# set (as infra/ does) a thread answers ``/live`` (200 while Python runs) and ``/ready`` (200 from
# ``ready()`` until the stop signal: a new revision replaces the old only once it runs). Unset, as on
# a developer's machine beside the emulator, nothing listens.

STOP_SECONDS = 15.0  # infra/resources.bicep's grace period must be longer; tests/deployment/test_shutdown.py checks it
HEALTH_PORT_VARIABLE = "HEALTH_PORT"
GIVE_UP_STATUS = 1

log = logging.getLogger("settings")


class Lifecycle:
    """One process's stop event, its deadline after the first signal, and its readiness."""

    def __init__(self, name: str, stop_seconds: float = STOP_SECONDS):
        self.name = name
        self.stop_seconds = stop_seconds
        self.stopping = threading.Event()
        self._ready = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    def on_signals(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._signalled)

    def _signalled(self, signum: int, _frame) -> None:
        if self.stopping.is_set():
            self._give_up(f"a second {signal.Signals(signum).name}")
            return
        self.stopping.set()
        log.info("%s: %s received; stopping within %.0fs", self.name, signal.Signals(signum).name,
                 self.stop_seconds)
        timer = threading.Timer(self.stop_seconds, self._give_up, args=(f"{self.stop_seconds:.0f}s passed",))
        timer.daemon = True
        timer.start()

    def _give_up(self, why: str) -> None:
        """Exit now, without waiting for threads that may never end (the SDK's are not daemons)."""
        log.warning("%s: still stopping and %s: exiting now; unfinished work items go to another worker",
                    self.name, why)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        logging.shutdown()
        os._exit(GIVE_UP_STATUS)

    def ready(self) -> None:
        self._ready.set()

    def is_ready(self) -> bool:
        return self._ready.is_set() and not self.stopping.is_set()

    def serve_health(self, env: Mapping[str, str] | None = None) -> int | None:
        """Answer the probes on HEALTH_PORT, if set; returns the port listened on.

        A bad port is logged, not raised: the process still does its work, and the failing probes
        and the log line say why (HEALTH_PORT comes from infra/, not from the user).
        """
        value = (os.environ if env is None else env).get(HEALTH_PORT_VARIABLE, "").strip()
        if not value:
            return None
        if not value.isdigit() or not 0 <= int(value) <= 65535:
            log.error("%s: %s '%s' is not a port number (0-65535); not answering the probes", self.name,
                      HEALTH_PORT_VARIABLE, value)
            return None
        lifecycle = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the name http.server calls
                checks = {"/live": lambda: True, "/ready": lifecycle.is_ready}
                check = checks.get(self.path)
                status = 404 if check is None else 200 if check() else 503
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):  # a probe every few seconds is not worth a log line
                pass

        try:
            self._server = ThreadingHTTPServer(("0.0.0.0", int(value)), Handler)  # noqa: S104 - probes come from outside
        except OSError as exc:
            log.error("%s: cannot listen on %s %s (%s); not answering the probes", self.name, HEALTH_PORT_VARIABLE,
                      value, exc)
            return None
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="health", daemon=True).start()
        port = self._server.server_address[1]
        log.info("%s: health endpoints /live and /ready on port %d", self.name, port)
        return port

    def close_health(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
