"""Fixtures for the client tests: a connected client and fresh streams.

Every test shares the session's Liftbridge server (``liftbridge_server``) and
gets unique stream names; tests that need another server configuration start
their own, module-scoped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from lbwire.client import LiftbridgeClient
from lbwire.testing import LiftbridgeServer


@pytest.fixture
def broker(liftbridge_server: LiftbridgeServer) -> str:
    """Address of the shared server."""
    return liftbridge_server.broker


@pytest.fixture
async def client(broker: str) -> AsyncIterator[LiftbridgeClient]:
    """A client of the shared server, open for the test."""
    async with LiftbridgeClient([broker]) as client:
        yield client


@pytest.fixture
async def stream(client: LiftbridgeClient, stream_name: str) -> str:
    """A new one-partition stream (name = subject), ready to use."""
    await client.create_stream(stream_name, wait_for_stream=True)
    return stream_name


@pytest.fixture(scope="module")
def group_server() -> Iterator[LiftbridgeServer]:
    """A server of the module's own with short group timeouts: members poll every 0.8 s."""
    with LiftbridgeServer(
        config_overrides={"groups.consumer.timeout": "2s", "groups.coordinator.timeout": "2s"}
    ) as server:
        yield server
