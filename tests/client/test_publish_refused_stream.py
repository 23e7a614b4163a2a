"""A publish the server refused with RST_STREAM(REFUSED_STREAM) is sent again, once.

A fake HTTP/2 peer stands in for the broker: a real Liftbridge refuses streams
only under load it cannot be made to produce on demand. REFUSED_STREAM means
the server never began the call, so the transport marks it `not_processed`
and the client may send it again without storing it twice.
"""

from __future__ import annotations

import pytest
from helpers.h2peer import raw_server

from lbwire import wire
from lbwire.client import LiftbridgeClient, RetryPolicy

pytestmark = pytest.mark.anyio

PUBLISH = b"/proto.API/Publish"
METADATA = b"/proto.API/FetchMetadata"


def ack_for(body: bytes) -> list[bytes]:
    request = wire.PublishRequest.decode(body)
    ack = wire.Ack(stream=request.stream, offset=7, correlationId=request.correlationId)
    return [wire.PublishResponse(ack=ack).encode()]


async def test_a_refused_publish_is_sent_again_exactly_once() -> None:
    async with raw_server() as server:
        server.replies[PUBLISH] = ack_for
        # After a refusal the client refreshes its metadata before trying again.
        broker = wire.Broker(id="fake", host="127.0.0.1", port=server.port)
        server.replies[METADATA] = lambda _: [wire.FetchMetadataResponse(brokers=[broker]).encode()]
        server.refuse_once.add(PUBLISH)
        policy = RetryPolicy(attempts=5, initial_backoff=0.01, max_backoff=0.02, max_time=10)
        async with LiftbridgeClient([f"127.0.0.1:{server.port}"], retry_policy=policy) as client:
            ack = await client.publish(b"once", stream="s", partition=0)
        publishes = [headers for _, headers in server.requests if headers[b":path"] == PUBLISH]
        assert len(publishes) == 2  # the refused one and the one answered
        assert ack is not None
        assert ack.offset == 7
