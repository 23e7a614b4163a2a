"""A PublishAsync reply that does not decode fails its own stream's acks only.

A fake peer is used because a real Liftbridge server cannot send a malformed
PublishAsync reply: grpcio's server (a real gRPC peer) answers every request
with bytes that are not a PublishResponse.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from helpers import HANG_GUARD, wait_until

from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorUnavailable
from lbwire.retry import RetryPolicy

grpc = pytest.importorskip("grpc", reason="grpcio is not installed (it has no PyPy wheels)")

pytestmark = pytest.mark.anyio

#: Field 31 with wire type 7, which does not exist: no message decodes from it.
GARBAGE = b"\xff\xff\xff\xff"


def _garbage_acks(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
    for _ in requests:
        yield GARBAGE


@pytest.fixture
def garbage_peer() -> Iterator[str]:
    """A gRPC server whose PublishAsync answers each request with garbage."""
    from concurrent.futures import ThreadPoolExecutor

    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    handler = grpc.stream_stream_rpc_method_handler(_garbage_acks)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("proto.API", {"PublishAsync": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None)


async def test_a_malformed_ack_fails_its_call_and_leaves_the_block_running(
    garbage_peer: str,
) -> None:
    ticks = 0
    policy = RetryPolicy(attempts=2, initial_backoff=0.01, max_backoff=0.01, max_time=1.0)

    async def unrelated_work() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0.01)

    with anyio.fail_after(HANG_GUARD):
        async with LiftbridgeClient([garbage_peer], retry_policy=policy) as client:  # noqa: SIM117 (3.9)
            async with anyio.create_task_group() as user_tasks:
                user_tasks.start_soon(unrelated_work)
                with pytest.raises(ErrorUnavailable, match="Malformed"):
                    await (await client.publish_async(b"x", stream="s"))
                # The client's tasks failed nothing else: the user's task runs on,
                # and the next publish gets its own (equally broken) stream.
                seen = ticks
                with pytest.raises(ErrorUnavailable, match="Malformed"):
                    await (await client.publish_async(b"y", stream="s"))
                await wait_until(lambda: ticks > seen, "the user's task runs on")
                user_tasks.cancel_scope.cancel()


async def test_a_malformed_reply_to_a_single_publish_says_it_may_be_stored(
    garbage_peer: str,
) -> None:
    # An acked publish travels on the PublishAsync stream too: the reply to a
    # message that went out does not decode, so whether it was stored is not known.
    policy = RetryPolicy(attempts=2, initial_backoff=0.01, max_backoff=0.01, max_time=1.0)
    with anyio.fail_after(HANG_GUARD):
        async with LiftbridgeClient([garbage_peer], retry_policy=policy) as client:
            with pytest.raises(ErrorUnavailable, match="Malformed") as caught:
                await client.publish(b"x", stream="s")
            assert "may or may not be stored" in str(caught.value)
            assert not caught.value.not_processed
