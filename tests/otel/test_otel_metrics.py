"""Metrics: published and received messages and bytes, acks, and the observer's counters."""

from __future__ import annotations

import anyio
import pytest
from helpers import aclosing
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from otel_support import collect, total

from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorNotFound, ErrorUnavailable
from lbwire.otel import Instrumentation, instrument
from lbwire.types import AckPolicy, StartPosition

#: A guard against hangs, never a speed expectation.
HANG_GUARD = 20.0


@pytest.mark.anyio
async def test_counts_match_what_was_published_and_received(
    client: LiftbridgeClient,
    stream: str,
    instrumentation: Instrumentation,
    metrics: InMemoryMetricReader,
) -> None:
    values = [b"a", b"bb", b"ccc"]
    for value in values:
        await client.publish(value, stream=stream)
    await client.publish(b"dddd", stream=stream, ack_policy=AckPolicy.NONE)
    received = 0
    with anyio.fail_after(HANG_GUARD):
        async with aclosing(
            client.subscribe(stream, start_position=StartPosition.EARLIEST)
        ) as messages:
            async for _ in messages:
                received += 1
                if received == 4:
                    break
    where = {"messaging.destination.name": stream, "messaging.destination.partition.id": "0"}
    points = collect(metrics)
    assert total(points, "messaging.client.sent.messages", **where) == 4
    assert total(points, "lbwire.client.sent.bytes", **where) == 10
    assert total(points, "messaging.client.consumed.messages", **where) == 4
    assert total(points, "lbwire.client.consumed.bytes", **where) == 10
    # AckPolicy.NONE gets no ack.
    assert total(points, "lbwire.client.acks", **where) == 3
    assert total(points, "lbwire.client.ack.duration", **where) == 3
    assert (
        total(
            points,
            "messaging.client.operation.duration",
            **{"messaging.operation.name": "publish"},
        )
        == 4
    )


@pytest.mark.anyio
async def test_a_failed_call_is_measured_with_its_error_type(
    client: LiftbridgeClient,
    stream_name: str,
    instrumentation: Instrumentation,
    metrics: InMemoryMetricReader,
) -> None:
    with pytest.raises(ErrorNotFound):
        await client.publish(b"x", stream=stream_name)
    where = {"messaging.destination.name": stream_name}
    points = collect(metrics)
    assert total(points, "messaging.client.sent.messages", **where) == 0
    assert (
        total(
            points,
            "messaging.client.operation.duration",
            **where,
            **{"error.type": "lbwire.error.ErrorNotFound"},
        )
        == 1
    )


@pytest.mark.anyio
async def test_publish_bulk_counts_each_message(
    client: LiftbridgeClient,
    stream: str,
    instrumentation: Instrumentation,
    metrics: InMemoryMetricReader,
) -> None:
    requests = [client.get_publish_request(b"xy", stream=stream) for _ in range(5)]
    with anyio.fail_after(HANG_GUARD):
        async for _ in client.publish_bulk(requests):
            pass
    where = {"messaging.destination.name": stream}
    points = collect(metrics)
    assert total(points, "messaging.client.sent.messages", **where) == 5
    assert total(points, "lbwire.client.sent.bytes", **where) == 10


# -- the observer: what the client reports that its public API does not show --
# Called directly here: the client calls the same methods where these happen.


@pytest.fixture
def observer(idle_client: LiftbridgeClient, meter_provider: MeterProvider) -> Instrumentation:
    return instrument(idle_client, meter_provider=meter_provider)


def test_retries_are_counted_by_method_and_error(
    observer: Instrumentation, metrics: InMemoryMetricReader
) -> None:
    observer.on_retry("FetchMetadata", 1, ErrorUnavailable("down"))
    observer.on_retry("FetchMetadata", 2, ErrorUnavailable("down"))
    observer.on_retry("Publish", 1, ErrorUnavailable("down"))
    points = collect(metrics)
    assert total(points, "lbwire.client.retries") == 3
    assert (
        total(
            points,
            "lbwire.client.retries",
            **{
                "messaging.operation.name": "FetchMetadata",
                "error.type": "lbwire.error.ErrorUnavailable",
            },
        )
        == 2
    )


def test_reconnects_are_counted_by_broker(
    observer: Instrumentation, metrics: InMemoryMetricReader
) -> None:
    observer.on_reconnect("127.0.0.1:9292")
    observer.on_reconnect("[::1]:9293")
    points = collect(metrics)
    [first, second] = sorted(
        points["lbwire.client.reconnects"],
        key=lambda p: p.attributes["server.port"],
    )
    assert dict(first.attributes) == {
        "messaging.system": "liftbridge",
        "server.address": "127.0.0.1",
        "server.port": 9292,
    }
    assert (first.value, second.attributes["server.address"], second.value) == (1, "::1", 1)


def test_resubscribes_are_counted_by_stream_and_partition(
    observer: Instrumentation, metrics: InMemoryMetricReader
) -> None:
    observer.on_resubscribe("orders", 2, ErrorUnavailable("leader lost"))
    where = {"messaging.destination.name": "orders", "messaging.destination.partition.id": "2"}
    points = collect(metrics)
    assert total(points, "lbwire.client.resubscribes", **where) == 1


def test_pipelined_acks_are_counted_and_timed(
    observer: Instrumentation, metrics: InMemoryMetricReader
) -> None:
    observer.on_ack("orders", 0, 0.004)
    observer.on_ack("orders", 0, 0.006)
    where = {"messaging.destination.name": "orders", "messaging.destination.partition.id": "0"}
    points = collect(metrics)
    assert total(points, "lbwire.client.acks", **where) == 2
    [latency] = points["lbwire.client.ack.duration"]
    assert (latency.count, round(latency.sum, 6)) == (2, 0.01)
