"""Creating a client and reaching (or not reaching) brokers."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import anyio
import pytest
from client_support import HANG_GUARD

from lbwire.client import LiftbridgeClient, RetryPolicy
from lbwire.error import ErrorDeadlineExceeded, ErrorUnavailable

pytestmark = pytest.mark.anyio

#: Fails fast: three tries within a second.
QUICK_RETRIES = RetryPolicy(attempts=3, initial_backoff=0.01, max_backoff=0.05, max_time=1.0)


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections (bound, not listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def saturated_port() -> Iterator[int]:
    """A loopback port whose accept queue is full: connection attempts hang.

    With a backlog of 1 Linux queues two connections; once they are taken,
    SYNs are dropped and connect() waits until the client gives up. (Not a
    backlog of 0: PyPy raises it to 1.)
    """
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5),
            socket.create_connection(("127.0.0.1", port), timeout=5),
        ):
            yield port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


async def test_empty_broker_list_raises_value_error() -> None:
    with pytest.raises(ValueError, match="broker"):
        LiftbridgeClient([])


@pytest.mark.parametrize(
    "address",
    [
        "localhost",
        "localhost:",
        ":9292",
        "host:port",
        "host:0",
        "host:70000",
        "::1:9292",
        "[::1]9292",
        "[::1",
        "bad host:9292",
        "",
    ],
)
async def test_malformed_broker_address_raises_value_error(address: str) -> None:
    with pytest.raises(ValueError, match="broker address"):
        LiftbridgeClient([address])


async def test_well_formed_addresses_are_accepted_without_connecting() -> None:
    LiftbridgeClient(["localhost:9292", "10.0.0.1:1", "[::1]:9292"])


async def test_invalid_compression_method_raises_value_error(broker: str) -> None:
    with pytest.raises(ValueError, match="compression method"):
        LiftbridgeClient([broker], compression_method="snappy")


@pytest.mark.parametrize(
    "option",
    [
        "connect_timeout",
        "rpc_timeout",
        "ack_timeout",
        "publish_async_ack_timeout",
        "max_publish_size",
        "max_message_size",
    ],
)
async def test_non_positive_limit_raises_value_error(broker: str, option: str) -> None:
    with pytest.raises(ValueError, match=option):
        LiftbridgeClient([broker], **{option: 0})


async def test_refused_connection_raises_unavailable_after_bounded_retries(
    refusing_port: int,
) -> None:
    address = f"127.0.0.1:{refusing_port}"
    async with LiftbridgeClient([address], retry_policy=QUICK_RETRIES) as client:
        with anyio.fail_after(HANG_GUARD), pytest.raises(ErrorUnavailable) as caught:
            await client.get_metadata()
    assert address in str(caught.value)


async def test_hanging_connect_raises_unavailable_after_connect_timeout(
    saturated_port: int,
) -> None:
    async with LiftbridgeClient(
        [f"127.0.0.1:{saturated_port}"], connect_timeout=0.2, retry_policy=QUICK_RETRIES
    ) as client:
        with anyio.fail_after(HANG_GUARD), pytest.raises(ErrorUnavailable) as caught:
            await client.get_metadata()
    assert "timed out" in str(caught.value)


async def test_silent_broker_fails_after_rpc_timeout(silent_port: int) -> None:
    async with LiftbridgeClient(
        [f"127.0.0.1:{silent_port}"], rpc_timeout=0.3, retry_policy=QUICK_RETRIES
    ) as client:
        with anyio.fail_after(HANG_GUARD), pytest.raises(ErrorDeadlineExceeded) as caught:
            await client.get_metadata()
    assert f"FetchMetadata to 127.0.0.1:{silent_port}" in str(caught.value)


async def test_unreachable_seed_is_skipped_for_a_reachable_one(
    refusing_port: int, broker: str
) -> None:
    async with LiftbridgeClient(
        [f"127.0.0.1:{refusing_port}", broker], retry_policy=QUICK_RETRIES
    ) as client:
        with anyio.fail_after(HANG_GUARD):
            metadata = await client.get_metadata()
    assert [b.address for b in metadata.brokers] == [broker]
