"""A reply that does not decode raises a LiftbridgeError, never `wire.DecodeError`.

A real Liftbridge server cannot send a malformed reply, so these tests use a
fake peer: grpcio's server (a real gRPC peer) serving `proto.API` with a
generic handler. It answers FetchMetadata with valid metadata naming itself
as the leader of every partition (or with garbage, where the test says so),
and every other method with bytes that are not a valid protobuf message
(Subscribe: the empty handshake, then such bytes).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import pytest
from helpers import aclosing

from lbwire import wire
from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorInternal, ErrorMalformedReply, LiftbridgeError
from lbwire.retry import RetryPolicy
from lbwire.types import StartPosition

grpc = pytest.importorskip("grpc", reason="grpcio is not installed (it has no PyPy wheels)")

#: A length-delimited field whose length runs past the end: no message decodes from it.
GARBAGE = b"\x0a\x05ab"


class FakeLiftbridge:
    """A grpcio server on 127.0.0.1 that answers `proto.API` calls from a table."""

    def __init__(self, garbage_metadata: bool) -> None:
        self.garbage_metadata = garbage_metadata
        self._server = grpc.server(ThreadPoolExecutor(max_workers=4))
        self._server.add_generic_rpc_handlers((self,))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    @property
    def broker(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.stop(None).wait()

    def service(self, details: Any) -> Any:
        """grpcio's GenericRpcHandler hook: a raw-bytes handler for every method."""
        method = details.method.rsplit("/", 1)[-1]
        answer: Callable[[bytes, Any], bytes]
        if method == "Subscribe":
            return grpc.unary_stream_rpc_method_handler(self._subscribe)
        if method == "FetchMetadata" and not self.garbage_metadata:
            answer = self._metadata
        else:
            answer = lambda request, context: GARBAGE  # noqa: E731
        return grpc.unary_unary_rpc_method_handler(answer)

    @staticmethod
    def _subscribe(request: bytes, context: Any) -> Iterator[bytes]:
        yield b""  # the handshake: an empty Message
        yield GARBAGE

    def _metadata(self, request: bytes, context: Any) -> bytes:
        def stream(name: str) -> wire.StreamMetadata:
            partition = wire.PartitionMetadata(id=0, leader="b1", replicas=["b1"], isr=["b1"])
            return wire.StreamMetadata(name=name, subject=name, partitions={0: partition})

        return wire.FetchMetadataResponse(
            brokers=[wire.Broker(id="b1", host="127.0.0.1", port=self.port)],
            streamMetadata=[stream("s"), stream("__cursors")],
        ).encode()


@pytest.fixture(params=[False, True], ids=["good-metadata", "garbage-metadata"])
def fake(request: pytest.FixtureRequest) -> Iterator[FakeLiftbridge]:
    server = FakeLiftbridge(garbage_metadata=request.param)
    yield server
    server.stop()


@pytest.fixture
def fake_good() -> Iterator[FakeLiftbridge]:
    server = FakeLiftbridge(garbage_metadata=False)
    yield server
    server.stop()


def client_of(server: FakeLiftbridge) -> LiftbridgeClient:
    return LiftbridgeClient([server.broker], retry_policy=RetryPolicy(max_time=2.0))


def assert_malformed(exc: BaseException, method: str) -> None:
    assert isinstance(exc, ErrorMalformedReply)
    assert isinstance(exc, ErrorInternal)
    assert not isinstance(exc, wire.DecodeError)
    assert method in str(exc)


@pytest.mark.anyio
async def test_get_metadata_raises_malformed_reply() -> None:
    server = FakeLiftbridge(garbage_metadata=True)
    try:
        async with client_of(server) as client:
            with pytest.raises(LiftbridgeError) as info:
                await client.get_metadata()
        assert_malformed(info.value, "FetchMetadata")
    finally:
        server.stop()


@pytest.mark.anyio
async def test_create_stream_raises_malformed_reply(fake_good: FakeLiftbridge) -> None:
    async with client_of(fake_good) as client:
        with pytest.raises(LiftbridgeError) as info:
            await client.create_stream("s")
    assert_malformed(info.value, "CreateStream")


@pytest.mark.anyio
async def test_set_cursor_raises_malformed_reply(fake: FakeLiftbridge) -> None:
    async with client_of(fake) as client:
        with pytest.raises(LiftbridgeError) as info:
            await client.set_cursor("s", 0, "c", 5)
    assert_malformed(info.value, "FetchMetadata" if fake.garbage_metadata else "SetCursor")


@pytest.mark.anyio
async def test_get_cursor_raises_malformed_reply(fake: FakeLiftbridge) -> None:
    async with client_of(fake) as client:
        with pytest.raises(LiftbridgeError) as info:
            await client.get_cursor("s", 0, "c")
    assert_malformed(info.value, "FetchCursor" if not fake.garbage_metadata else "FetchMetadata")


@pytest.mark.anyio
async def test_unary_publish_with_ack_raises_malformed_reply(fake_good: FakeLiftbridge) -> None:
    # A publish with its own ack inbox is a unary Publish call; the PublishAsync
    # stream's malformed replies are test_publish_malformed_ack.py's.
    async with client_of(fake_good) as client:
        with pytest.raises(LiftbridgeError) as info:
            await client.publish(b"x", stream="s", partition=0, ack_inbox="inbox")
    assert_malformed(info.value, "Publish")


@pytest.mark.anyio
async def test_subscribe_raises_malformed_reply(fake_good: FakeLiftbridge) -> None:
    async def read_all(client: LiftbridgeClient) -> None:
        subscription = client.subscribe("s", partition=0, start_position=StartPosition.EARLIEST)
        async with aclosing(subscription) as messages:
            async for _ in messages:
                pass

    async with client_of(fake_good) as client:
        with pytest.raises(LiftbridgeError) as info:
            await read_all(client)
    assert_malformed(info.value, "Subscribe")
