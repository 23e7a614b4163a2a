"""The gRPC health service of real servers: Check and Watch, and what their statuses mean.

What the tests establish on both server generations: `proto.API` and the
empty service are SERVING; a restarted server says SERVING before its
streams are loaded; SIGINT may or may not let a watcher see NOT_SERVING
before the connection closes (v1.9.0 sets it just before it stops its gRPC
server, so it is nearly always lost); SIGTERM ends the server with no status
at all. Hence the docs: a hint, never a guarantee.
"""

from __future__ import annotations

import os
import signal

import anyio
import pytest
from helpers import HANG_GUARD, aclosing, wait_until

from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorInvalidArgument, ErrorNotFound, ErrorUnavailable, LiftbridgeError
from lbwire.testing import LiftbridgeServer
from lbwire.types import HealthStatus

pytestmark = pytest.mark.anyio


async def test_api_service_and_server_are_serving(client: LiftbridgeClient) -> None:
    assert await client.health() is HealthStatus.SERVING
    assert await client.health("proto.API") is HealthStatus.SERVING
    assert await client.health("") is HealthStatus.SERVING


async def test_health_of_a_named_broker(
    client: LiftbridgeClient, liftbridge_server: LiftbridgeServer
) -> None:
    assert await client.health(broker=liftbridge_server.broker) is HealthStatus.SERVING


async def test_health_of_unknown_service_raises_not_found(client: LiftbridgeClient) -> None:
    with pytest.raises(ErrorNotFound, match=r"service 'no\.such\.Service'.*unknown service"):
        await client.health("no.such.Service")


async def test_health_of_malformed_broker_address_raises_invalid_argument(
    client: LiftbridgeClient,
) -> None:
    with pytest.raises(ErrorInvalidArgument, match="host:port"):
        await client.health(broker="localhost")
    with pytest.raises(ErrorInvalidArgument, match="host:port"):
        client.watch_health(broker="localhost")


async def test_watch_health_yields_the_current_status_first(client: LiftbridgeClient) -> None:
    with anyio.fail_after(HANG_GUARD):
        async with aclosing(client.watch_health()) as statuses:
            assert await statuses.__anext__() is HealthStatus.SERVING
    # Closing the watch cancelled its call, not the connection.
    assert await client.health() is HealthStatus.SERVING


async def test_watch_health_of_unknown_service_yields_service_unknown(
    client: LiftbridgeClient,
) -> None:
    with anyio.fail_after(HANG_GUARD):
        async with aclosing(client.watch_health("no.such.Service")) as statuses:
            assert await statuses.__anext__() is HealthStatus.SERVICE_UNKNOWN


async def test_watch_health_outside_the_block_raises_at_the_call(broker: str) -> None:
    client = LiftbridgeClient([broker])
    with pytest.raises(RuntimeError, match="async with"):
        client.watch_health()
    # A check brings its own connection, as every call outside the block.
    assert await client.health() is HealthStatus.SERVING


async def watch_after(
    client: LiftbridgeClient, server: LiftbridgeServer, sig: signal.Signals
) -> list[object]:
    """What a watch gets after its first status, when the server gets `sig`.

    The statuses, then the exception that ended the watch.
    """
    seen: list[object] = []
    with anyio.fail_after(HANG_GUARD):
        async with aclosing(client.watch_health()) as statuses:
            assert await statuses.__anext__() is HealthStatus.SERVING
            assert server.pid is not None
            os.kill(server.pid, sig)
            try:
                async for status in statuses:
                    seen.append(status)
            except LiftbridgeError as exc:
                seen.append(exc)
    await anyio.to_thread.run_sync(server.stop)  # reaps the process
    return seen


async def test_watch_sees_not_serving_or_its_end_when_the_server_gets_sigint(
    fresh_server: LiftbridgeServer,
) -> None:
    async with LiftbridgeClient([fresh_server.broker]) as client:
        seen = await watch_after(client, fresh_server, signal.SIGINT)
    *statuses, end = seen
    assert statuses in ([], [HealthStatus.NOT_SERVING])
    assert isinstance(end, ErrorUnavailable)


async def test_sigterm_ends_the_watch_without_a_status(fresh_server: LiftbridgeServer) -> None:
    async with LiftbridgeClient([fresh_server.broker]) as client:
        seen = await watch_after(client, fresh_server, signal.SIGTERM)
        assert len(seen) == 1
        assert isinstance(seen[0], ErrorUnavailable)
        with pytest.raises(ErrorUnavailable):
            await client.health()


async def test_restarted_server_is_serving_before_its_streams_are_loaded(
    fresh_server: LiftbridgeServer, stream_name: str
) -> None:
    async with LiftbridgeClient([fresh_server.broker]) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
    await anyio.to_thread.run_sync(fresh_server.stop)
    fresh_server.launch()
    async with LiftbridgeClient([fresh_server.broker]) as client:

        async def serving() -> bool:
            try:
                return await client.health(timeout=1) is HealthStatus.SERVING
            except ErrorUnavailable:
                return False  # not listening yet

        await wait_until(serving, "the restarted server says SERVING", interval=0.005)
        with pytest.raises(ErrorNotFound):
            await client.get_partition_metadata(stream_name, 0)
        await client.wait_for_stream(stream_name, timeout=HANG_GUARD)
