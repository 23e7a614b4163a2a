"""A failed publish is sent again only when the transport says the server never began it.

The transport marks such failures with `GRPCError.not_processed` (GOAWAY
beyond the call's stream, RST_STREAM REFUSED_STREAM). A real server cannot be
made to produce either on demand, so these tests wrap the client's real
channel (through the test hook `ConnectionRegistry.channel_factory`) and fail
one publish the way the transport would; everything else, including the
publish that is sent again, goes to the real server.

Both ways a single publish travels are covered: the client's PublishAsync
stream (an acked publish inside the client's block) and the unary Publish
call (here: a publish that names its own ack inbox).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Optional

import pytest
from client_support import read_all
from helpers import wait_until

from lbwire._pool import ConnectionRegistry
from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorUnavailable
from lbwire.grpc import Channel, GRPCError, Status, StreamStreamCall

pytestmark = pytest.mark.anyio

_PUBLISH = "/proto.API/Publish"
_PUBLISH_ASYNC = "/proto.API/PublishAsync"


class Fault:
    """How the first publish fails, and what reached the server."""

    #: The transport's verdict on the failed publish.
    not_processed = True
    #: Whether the failed publish reached the server before the failure.
    deliver = False
    #: Awaited after a delivery, before the failure: until the server stored it
    #: (grpc-go may drop a message its stream's cancellation follows at once).
    delivered: Optional[Callable[[], Awaitable[None]]] = None
    failed = False
    publishes_sent = 0

    def fail(self) -> None:
        self.failed = True
        if self.deliver:
            self.publishes_sent += 1
        raise GRPCError(Status.UNAVAILABLE, "connection lost", not_processed=self.not_processed)


_fault: Optional[Fault] = None


class _FailingStream(StreamStreamCall):
    """A real PublishAsync call whose first message fails as `_fault` says."""

    __slots__ = ("channel",)

    def __init__(self, call: Any, channel: Channel) -> None:
        super().__init__(call)
        self.channel = channel

    def send_message_nowait(self, message: bytes) -> bool:
        return False  # every message goes through send_message, where the fault is

    async def send_message(self, message: bytes) -> None:
        assert _fault is not None
        if not _fault.failed:
            if _fault.deliver:
                await super().send_message(message)
                connection = self.channel.connection
                assert connection is not None
                await connection.flush()
                if _fault.delivered is not None:
                    await _fault.delivered()
            _fault.fail()
        _fault.publishes_sent += 1
        await super().send_message(message)


class _FailsFirstPublish(Channel):
    """A real channel whose first publish (either way) fails as `_fault` says."""

    async def unary_unary(self, path: str, request: bytes, **kwargs: Any) -> bytes:
        assert _fault is not None
        if path == _PUBLISH and not _fault.failed:
            if _fault.deliver:
                await super().unary_unary(path, request, **kwargs)
            _fault.fail()
        if path == _PUBLISH:
            _fault.publishes_sent += 1
        return await super().unary_unary(path, request, **kwargs)

    def stream_stream(
        self, path: str, *, timeout: Optional[float] = None, metadata: Any = None
    ) -> StreamStreamCall:
        if path != _PUBLISH_ASYNC:
            return super().stream_stream(path, timeout=timeout, metadata=metadata)
        return _FailingStream(self._call(path, timeout, metadata), self)


@pytest.fixture
def fault(monkeypatch: pytest.MonkeyPatch) -> Fault:
    global _fault
    _fault = Fault()
    monkeypatch.setattr(ConnectionRegistry, "channel_factory", _FailsFirstPublish)
    return _fault


@pytest.fixture(params=["stream", "unary"])
def way(request: pytest.FixtureRequest, stream_name: str) -> dict[str, Any]:
    """The publish's keyword arguments that choose how it travels."""
    if request.param == "unary":
        return {"ack_inbox": f"lbwire-test.inbox.{stream_name}"}
    return {}


async def test_a_publish_the_server_never_began_is_sent_again_once(
    broker: str, stream_name: str, fault: Fault, way: dict[str, Any]
) -> None:
    async with LiftbridgeClient([broker]) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
        ack = await client.publish(b"once", stream=stream_name, **way)
        assert ack is not None
        assert fault.failed
        assert fault.publishes_sent == 1
        assert [m.value for m in await read_all(client, stream_name)] == [b"once"]


async def test_a_publish_that_may_have_been_stored_is_not_sent_again(
    broker: str, stream_name: str, fault: Fault, way: dict[str, Any]
) -> None:
    fault.not_processed = False
    fault.deliver = True
    async with LiftbridgeClient([broker]) as client:
        await client.create_stream(stream_name, wait_for_stream=True)

        async def stored() -> bool:
            return (await client.get_partition_metadata(stream_name, 0)).newest_offset == 0

        async def delivered() -> None:
            await wait_until(stored, "the server stored the message")

        fault.delivered = delivered
        with pytest.raises(ErrorUnavailable, match="may or may not be stored") as caught:
            await client.publish(b"maybe", stream=stream_name, **way)
        assert not caught.value.not_processed
        assert fault.publishes_sent == 1
        assert [m.value for m in await read_all(client, stream_name)] == [b"maybe"]
