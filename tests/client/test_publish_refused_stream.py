"""A publish the server refused with RST_STREAM(REFUSED_STREAM) is sent again, once.

A fake HTTP/2 peer stands in for the broker: a real Liftbridge refuses streams
only under load it cannot be made to produce on demand. REFUSED_STREAM means
the server never began the call, so the transport marks it `not_processed`
and the client may send it again without storing it twice.
"""

from __future__ import annotations

import anyio
import pytest
from client_support import HANG_GUARD
from helpers import wait_until
from helpers.h2peer import raw_server

from lbwire import wire
from lbwire.client import LiftbridgeClient, RetryPolicy
from lbwire.error import ErrorAckTimeout

pytestmark = pytest.mark.anyio

PUBLISH = b"/proto.API/Publish"
PUBLISH_ASYNC = b"/proto.API/PublishAsync"
METADATA = b"/proto.API/FetchMetadata"


def ack_for(body: bytes) -> list[bytes]:
    request = wire.PublishRequest.decode(body)
    ack = wire.Ack(stream=request.stream, offset=7, correlationId=request.correlationId)
    # Liftbridge names the correlation id in the reply and in its ack.
    return [wire.PublishResponse(ack=ack, correlationId=request.correlationId).encode()]


async def test_a_refused_publish_is_sent_again_exactly_once() -> None:
    """The unary Publish call (a publish with its own ack inbox travels that way)."""
    async with raw_server() as server:
        server.replies[PUBLISH] = ack_for
        # After a refusal the client refreshes its metadata before trying again.
        broker = wire.Broker(id="fake", host="127.0.0.1", port=server.port)
        server.replies[METADATA] = lambda _: [wire.FetchMetadataResponse(brokers=[broker]).encode()]
        server.refuse_once.add(PUBLISH)
        policy = RetryPolicy(attempts=5, initial_backoff=0.01, max_backoff=0.02, max_time=10)
        async with LiftbridgeClient([f"127.0.0.1:{server.port}"], retry_policy=policy) as client:
            ack = await client.publish(b"once", stream="s", partition=0, ack_inbox="inbox")
        publishes = [headers for _, headers in server.requests if headers[b":path"] == PUBLISH]
        assert len(publishes) == 2  # the refused one and the one answered
        assert ack is not None
        assert ack.offset == 7


async def test_a_refused_publish_stream_is_opened_again_and_the_publish_sent_once() -> None:
    """The PublishAsync stream an acked publish travels on: refused, then opened again."""
    async with raw_server() as server:
        server.streamed[PUBLISH_ASYNC] = ack_for
        server.refuse_once.add(PUBLISH_ASYNC)
        policy = RetryPolicy(attempts=5, initial_backoff=0.01, max_backoff=0.02, max_time=10)
        async with LiftbridgeClient([f"127.0.0.1:{server.port}"], retry_policy=policy) as client:
            ack = await client.publish(b"once", stream="s", partition=0)
            assert ack is not None
            assert ack.offset == 7
            # The next publish takes the same stream.
            assert await client.publish(b"twice", stream="s", partition=0) is not None
        opened = [headers for _, headers in server.requests if headers[b":path"] == PUBLISH_ASYNC]
        assert len(opened) == 2  # the refused stream and the one that answered


async def test_a_fresh_publish_stream_carries_one_acked_request_until_its_first_reply() -> None:
    """Liftbridge's first replies on a PublishAsync stream must not race.

    Its handler sends acks and refusals from two goroutines; on a stream that
    has not answered yet both may write the response headers, and grpc-go
    then drops a reply. The client holds other requests back until the
    first reply (or the first request's ack timeout): here the peer never
    answers the first, so the second goes out only after that timeout.
    """
    arrivals: list[tuple[str, float]] = []

    def answer(body: bytes) -> list[bytes]:
        request = wire.PublishRequest.decode(body)
        arrivals.append((request.value.decode(), anyio.current_time()))
        return [] if request.value == b"first" else ack_for(body)

    async with raw_server() as server:
        server.streamed[PUBLISH_ASYNC] = answer
        async with LiftbridgeClient([f"127.0.0.1:{server.port}"]) as client:

            async def first() -> None:
                with pytest.raises(ErrorAckTimeout):
                    await client.publish(b"first", stream="s", partition=0, ack_timeout=1.0)

            with anyio.fail_after(HANG_GUARD):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(first)
                    await wait_until(lambda: len(arrivals) == 1, "the first request arrives")
                    assert await client.publish(b"second", stream="s", partition=0) is not None
    (_, first_at), (second, second_at) = arrivals
    assert second == "second"
    # Sent at the first's ack timeout (1 s after it was sent), not at once.
    assert second_at - first_at >= 0.5, arrivals
