"""A failed publish is sent again only when the transport says the server never began it.

The transport marks such failures with `GRPCError.not_processed` (GOAWAY
beyond the call's stream, RST_STREAM REFUSED_STREAM). A real server cannot be
made to produce either on demand, so these tests wrap the client's real
channel (through the test hook `ConnectionRegistry.channel_factory`) and fail
one Publish call the way the transport would; everything else, including the
publish that is sent again, goes to the real server.
"""

from __future__ import annotations

from typing import Any

import pytest
from client_support import read_all

from lbwire._pool import ConnectionRegistry
from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorUnavailable
from lbwire.grpc import Channel, GRPCError, Status

pytestmark = pytest.mark.anyio

_PUBLISH = "/proto.API/Publish"


class _FailsFirstPublish(Channel):
    """A real channel whose first Publish fails as the transport would report it.

    With `deliver`, the request reaches the server before the failure (the
    connection broke after the request went out); without, it never leaves.
    """

    not_processed = True
    deliver = False
    publishes_sent = 0
    failed = False

    async def unary_unary(self, path: str, request: bytes, **kwargs: Any) -> bytes:
        cls = type(self)
        if path == _PUBLISH and not cls.failed:
            cls.failed = True
            if cls.deliver:
                cls.publishes_sent += 1
                await super().unary_unary(path, request, **kwargs)
            raise GRPCError(Status.UNAVAILABLE, "connection lost", not_processed=cls.not_processed)
        if path == _PUBLISH:
            cls.publishes_sent += 1
        return await super().unary_unary(path, request, **kwargs)


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> type[_FailsFirstPublish]:
    channel = type("FailsFirstPublish", (_FailsFirstPublish,), {})
    monkeypatch.setattr(ConnectionRegistry, "channel_factory", channel)
    return channel


async def test_a_publish_the_server_never_began_is_sent_again_once(
    broker: str, stream_name: str, flaky: type[_FailsFirstPublish]
) -> None:
    async with LiftbridgeClient([broker]) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
        ack = await client.publish(b"once", stream=stream_name)
        assert ack is not None
        assert flaky.failed
        assert flaky.publishes_sent == 1
        assert [m.value for m in await read_all(client, stream_name)] == [b"once"]


async def test_a_publish_that_may_have_been_stored_is_not_sent_again(
    broker: str, stream_name: str, flaky: type[_FailsFirstPublish]
) -> None:
    flaky.not_processed = False
    flaky.deliver = True
    async with LiftbridgeClient([broker]) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
        with pytest.raises(ErrorUnavailable, match="may or may not be stored") as caught:
            await client.publish(b"maybe", stream=stream_name)
        assert not caught.value.not_processed
        assert flaky.publishes_sent == 1
        assert [m.value for m in await read_all(client, stream_name)] == [b"maybe"]
