"""Fixtures for raw-protocol tests: an emulator of the test's own and a raw stub on it.

(A module may define its own ``stub``, on the shared session emulator: test_refusals.py does.)
"""

from __future__ import annotations

import grpc
import pytest
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc


@pytest.fixture
def emu(engine_emulator):
    return engine_emulator


@pytest.fixture
def stub(emu):
    channel = grpc.insecure_channel(emu.address)
    yield pb_grpc.TaskHubSidecarServiceStub(channel)
    channel.close()
