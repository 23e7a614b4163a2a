"""Pipelined publishing when its broker is unreachable or answers garbage.

`publish_async` opens the client's PublishAsync stream on first use; when the
broker is down it must fail with `ErrorUnavailable` after the retry policy,
and try the other brokers it knows. A reply that does not decode fails the
calls of its own stream, never the user's `async with` block.
"""

from __future__ import annotations

import socket

import anyio
import pytest
from helpers import HANG_GUARD

from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorAckTimeout, ErrorNotFound, ErrorUnavailable, LiftbridgeError
from lbwire.retry import RetryPolicy
from lbwire.testing import LiftbridgeServer

pytestmark = pytest.mark.anyio

#: Fails fast: the tests below wait out the whole policy.
FAST = RetryPolicy(attempts=3, initial_backoff=0.05, max_backoff=0.1, max_time=2.0)


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_publish_async_raises_unavailable_when_its_broker_is_down(
    fresh_server: LiftbridgeServer, stream_name: str
) -> None:
    async with LiftbridgeClient([fresh_server.broker], retry_policy=FAST) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
        assert await (await client.publish_async(b"before", stream=stream_name)) is not None
        fresh_server.kill()
        with anyio.fail_after(HANG_GUARD), pytest.raises(ErrorUnavailable):
            await (await client.publish_async(b"down", stream=stream_name))


async def test_publish_async_raises_unavailable_when_no_seed_answers() -> None:
    async with LiftbridgeClient([f"127.0.0.1:{_unused_port()}"], retry_policy=FAST) as client:
        with anyio.fail_after(HANG_GUARD), pytest.raises(ErrorUnavailable):
            await client.publish_async(b"x", stream="nowhere")


async def test_publish_async_opens_its_stream_on_a_broker_that_answers(
    fresh_server: LiftbridgeServer, stream_name: str
) -> None:
    dead = f"127.0.0.1:{_unused_port()}"
    async with LiftbridgeClient([fresh_server.broker]) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
    # Seeds are tried in random order: with several clients, some try the
    # dead one first.
    for _ in range(8):
        async with LiftbridgeClient([dead, fresh_server.broker], retry_policy=FAST) as client:
            with anyio.fail_after(HANG_GUARD):
                ack = await (await client.publish_async(b"x", stream=stream_name))
            assert ack is not None


async def test_publish_async_reopens_its_stream_after_a_server_restart(
    fresh_server: LiftbridgeServer, stream_name: str
) -> None:
    async with LiftbridgeClient([fresh_server.broker]) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
        assert await (await client.publish_async(b"before", stream=stream_name)) is not None
        fresh_server.restart()
        with anyio.fail_after(HANG_GUARD):
            while True:
                try:
                    pending = await client.publish_async(
                        b"after", stream=stream_name, ack_timeout=1.0
                    )
                    ack = await pending
                    break
                except LiftbridgeError:
                    # A restarted server answers before it leads its partitions
                    # again (NotFound, ack timeouts): lbwire errors, then success.
                    pass
        assert ack is not None


# ---------------------------------------------------------------- restarts

#: Long enough to cover a restarted server's loading of its streams.
PATIENT = RetryPolicy(attempts=50, initial_backoff=0.05, max_backoff=0.5, max_time=20.0)


async def test_publish_retries_a_known_stream_the_restarted_server_has_not_loaded(
    fresh_server: LiftbridgeServer, stream_name: str
) -> None:
    async with LiftbridgeClient([fresh_server.broker], retry_policy=PATIENT) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
        assert await client.publish(b"before", stream=stream_name) is not None
        await fresh_server.akill()
        with anyio.fail_after(HANG_GUARD):
            async with anyio.create_task_group() as tg:
                # Publishing while the server comes back: it accepts calls
                # before it has loaded its streams, and says they do not exist.
                tg.start_soon(fresh_server.astart)
                acked = 0
                while acked < 20:
                    try:
                        ack = await client.publish(b"after", stream=stream_name, ack_timeout=2.0)
                    except ErrorAckTimeout:
                        # Once it has loaded the stream, and until its Raft log
                        # replay ends, the server hands publishes to a partition
                        # it has not started (NATS drops them): the server's
                        # window, which lbwire reports honestly; not retried.
                        continue
                    assert ack is not None
                    acked += 1


async def test_publish_to_a_deleted_stream_raises_not_found_at_once(
    client: LiftbridgeClient, stream_name: str
) -> None:
    slow = RetryPolicy(attempts=5, initial_backoff=10.0, max_backoff=10.0, max_time=60.0)
    async with LiftbridgeClient(client.broker_seeds, retry_policy=slow) as own:
        await own.create_stream(stream_name, wait_for_stream=True)
        assert await own.publish(b"before", stream=stream_name) is not None
        await own.delete_stream(stream_name)
        started = anyio.current_time()
        with pytest.raises(ErrorNotFound):
            await own.publish(b"after", stream=stream_name)
        # A retry would have paused at least 5 s first (half the backoff).
        assert anyio.current_time() - started < 5.0
