"""settings.py: connection strings, environment variables, TLS and credential choice, errors."""

from __future__ import annotations

import logging
import threading

import pytest
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

import settings
from settings import SettingsError, load


def test_defaults_point_at_the_local_emulator():
    s = load({})
    assert (s.endpoint, s.taskhub, s.authentication) == ("http://localhost:8080", "default", "none")
    assert not s.secure_channel
    assert s.credential() is None


def test_endpoint_and_taskhub_from_environment():
    s = load({"ENDPOINT": "http://127.0.0.1:9000/", "TASKHUB": "hub1"})
    assert (s.endpoint, s.taskhub) == ("http://127.0.0.1:9000", "hub1")


def test_https_endpoint_uses_tls_and_default_azure_credential():
    s = load({"ENDPOINT": "https://my-scheduler.westus2.durabletask.io"})
    assert s.secure_channel
    assert s.authentication == "defaultazure"
    assert isinstance(s.credential(), DefaultAzureCredential)


def test_managed_identity_client_id_selects_user_assigned_identity():
    s = load({"ENDPOINT": "https://x.westus2.durabletask.io", "AZURE_MANAGED_IDENTITY_CLIENT_ID": "abc-123"})
    assert s.authentication == "managedidentity"
    assert isinstance(s.credential(), ManagedIdentityCredential)
    assert "abc-123" in s.auth_mode


@pytest.mark.parametrize("text", [
    "Endpoint=http://localhost:8080;TaskHub=default;Authentication=None",
    "endpoint=http://localhost:8080; taskhub=default ;authentication=none;",
    "ENDPOINT=http://localhost:8080;TASKHUB=default",
])
def test_local_connection_string_any_case(text):
    s = load({settings.CONNECTION_STRING_VARIABLE: text})
    assert (s.endpoint, s.taskhub, s.authentication) == ("http://localhost:8080", "default", "none")


def test_azure_connection_string_with_managed_identity():
    text = ("Endpoint=https://sched.eastus.durabletask.io;TaskHub=prod;"
            "Authentication=ManagedIdentity;ClientID=00000000-1111")
    s = load({settings.CONNECTION_STRING_VARIABLE: text, "ENDPOINT": "http://ignored:1"})
    assert (s.endpoint, s.taskhub, s.authentication, s.client_id) == (
        "https://sched.eastus.durabletask.io", "prod", "managedidentity", "00000000-1111")
    assert s.secure_channel


@pytest.mark.parametrize("value", ["AzureCli", "AzureCLI", "DefaultAzure", "WorkloadIdentity", "Environment"])
def test_every_documented_authentication_value_is_accepted(value):
    s = load({settings.CONNECTION_STRING_VARIABLE: f"Endpoint=https://a.b.durabletask.io;Authentication={value}"})
    assert s.authentication == value.lower()


@pytest.mark.parametrize("env, fragment", [
    ({settings.CONNECTION_STRING_VARIABLE: "Endpoint=http://x:1;Authentication=Password"}, "Authentication 'Password'"),
    ({settings.CONNECTION_STRING_VARIABLE: "Endpoint=http://x:1;Secret=1"}, "key 'secret'"),
    ({settings.CONNECTION_STRING_VARIABLE: "TaskHub=a"}, "no Endpoint"),
    ({settings.CONNECTION_STRING_VARIABLE: "Endpoint"}, "Key=Value"),
    ({"ENDPOINT": "localhost:8080"}, "not a URL"),
    ({"ENDPOINT": "ftp://localhost:8080"}, "not a URL"),
    ({"ENDPOINT": "http://localhost:99999"}, "invalid port"),
    ({settings.CONCURRENCY_VARIABLE: "0"}, "WORKER_MAX_CONCURRENT_WORK_ITEMS '0' is not a whole number of 1 or more"),
    ({settings.CONCURRENCY_VARIABLE: "many"}, "WORKER_MAX_CONCURRENT_WORK_ITEMS 'many'"),
])
def test_bad_settings_are_one_clear_error(env, fragment):
    with pytest.raises(SettingsError) as err:
        load(env)
    assert fragment in str(err.value)


def test_auth_mode_never_contains_secrets(caplog):
    s = load({settings.CONNECTION_STRING_VARIABLE:
              "Endpoint=https://a.b.durabletask.io;Authentication=ManagedIdentity;ClientID=id-1"})
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("auth %s", s.auth_mode)
    assert "ManagedIdentityCredential" in caplog.text


def test_worker_concurrency_is_the_sdk_default_unless_set():
    assert load({}).concurrency_options() is None
    connection = "Endpoint=https://a.b.durabletask.io;Authentication=ManagedIdentity"
    limited = load({settings.CONNECTION_STRING_VARIABLE: connection, settings.CONCURRENCY_VARIABLE: "4"})
    assert limited.max_concurrent_work_items == 4
    assert limited.concurrency_options().maximum_concurrent_entity_work_items == 4


def test_answers_says_no_when_nothing_listens_and_waits_for_a_scheduler_that_starts():
    from concurrent import futures

    import grpc

    from tests.helpers import free_port

    config = load({"ENDPOINT": f"http://127.0.0.1:{free_port()}"})
    assert not config.answers(5.0), "nothing listens yet"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))

    def start():
        server.add_insecure_port(config.endpoint.split("://", 1)[1])  # from here on, the port accepts
        server.start()

    starting = threading.Timer(0.3, start)  # it starts listening while answers() waits
    starting.start()
    try:
        assert config.answers(30.0, wait=True)
    finally:
        starting.join()
        server.stop(None)
