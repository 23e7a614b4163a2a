"""Fixtures of the gRPC layer tests: a real grpcio peer, channels to it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from lbwire.grpc import Channel

if TYPE_CHECKING:  # imported by the fixture: grpcio may be missing (PyPy)
    from peer import PeerServer


@pytest.fixture(scope="session")
def peer() -> Iterator[PeerServer]:
    """One grpcio server for the session (tests that stop it use their own)."""
    from peer import PeerServer

    server = PeerServer()
    yield server
    server.stop(None)


@pytest.fixture
async def channel(peer: PeerServer) -> AsyncIterator[Channel]:
    async with Channel.open("127.0.0.1", peer.port) as channel:
        yield channel
