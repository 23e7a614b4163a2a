"""Fixtures for the activity-stream tests: a server that writes ``__activity``.

The module-scoped server runs with ``activity.stream.enabled: true``; tests
share it and tell their events apart by their unique stream and group names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from lbwire.client import LiftbridgeClient
from lbwire.testing import LiftbridgeServer


@pytest.fixture(scope="module")
def activity_server() -> Iterator[LiftbridgeServer]:
    """A real Liftbridge server with its activity stream on."""
    with LiftbridgeServer(config_overrides={"activity.stream.enabled": True}) as server:
        yield server


@pytest.fixture
async def client(activity_server: LiftbridgeServer) -> AsyncIterator[LiftbridgeClient]:
    """A client of the activity server whose activity stream is ready."""
    async with LiftbridgeClient([activity_server.broker]) as client:
        await client.wait_for_stream("__activity", timeout=30)
        yield client
