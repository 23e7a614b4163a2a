"""The consumer-lag gauge: a point per partition of each open reader and group member."""

from __future__ import annotations

import gc
import logging
import weakref

import anyio
import pytest
from helpers import HANG_GUARD, wait_until
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from otel_support import collect

from lbwire.client import LiftbridgeClient
from lbwire.consumer import AutoOffset, GroupPartition
from lbwire.otel import Instrumentation, instrument, uninstrument
from lbwire.reader import StreamReader
from lbwire.types import StopPosition

pytestmark = pytest.mark.anyio

LAG = "lbwire.client.consumer.lag"
#: Messages published to each partition of the test stream.
COUNTS = (2, 3, 5)


@pytest.fixture
async def three(client: LiftbridgeClient, stream_name: str) -> str:
    """A stream whose partition p holds COUNTS[p] messages."""
    await client.create_stream(stream_name, partitions=len(COUNTS), wait_for_stream=True)
    await client.wait_for_cursors(timeout=HANG_GUARD)
    for partition, count in enumerate(COUNTS):
        for i in range(count):
            await client.publish(
                f"{partition}-{i}".encode(), stream=stream_name, partition=partition
            )
    return stream_name


def gauge(metrics: InMemoryMetricReader, **attributes: str) -> dict[int, int]:
    """The lag gauge's points whose attributes include these, by partition."""
    out: dict[int, int] = {}
    for point in collect(metrics).get(LAG, []):
        if all(point.attributes.get(k) == v for k, v in attributes.items()):
            assert point.attributes["messaging.system"] == "liftbridge"
            out[int(point.attributes["messaging.destination.partition.id"])] = point.value
    return out


async def take(reader: StreamReader, count: int) -> None:
    with anyio.fail_after(HANG_GUARD):
        for _ in range(count):
            await reader.__anext__()


async def test_a_readers_gauge_shows_its_lag_until_it_closes(
    client: LiftbridgeClient,
    three: str,
    instrumentation: Instrumentation,
    metrics: InMemoryMetricReader,
) -> None:
    ours = {"messaging.destination.name": three, "messaging.liftbridge.cursor_id": "c"}
    async with client.reader(
        three, cursor_id="c", auto_commit=False, stop_position=StopPosition.STOP_LATEST
    ) as reader:
        # Nothing committed: every message counts, known without a call of lag().
        everything = dict(enumerate(COUNTS))
        await wait_until(lambda: gauge(metrics, **ours) == everything, "the gauge counts all")
        await take(reader, 4)
        await reader.commit()  # three processed (the fourth is in hand)
        lag = await reader.lag()
        assert sum(lag.values()) == sum(COUNTS) - 3
        assert gauge(metrics, **ours) == lag
        with anyio.fail_after(HANG_GUARD):
            async for _ in reader:  # to the end: every message processed
                pass
        await reader.commit()
        assert gauge(metrics, **ours) == {0: 0, 1: 0, 2: 0}
        assert await reader.lag() == {0: 0, 1: 0, 2: 0}
    assert gauge(metrics, **ours) == {}
    assert gauge(metrics) == {}


async def test_a_reader_without_a_cursor_has_no_gauge(
    client: LiftbridgeClient,
    three: str,
    instrumentation: Instrumentation,
    metrics: InMemoryMetricReader,
) -> None:
    async with client.reader(three, stop_position=StopPosition.STOP_LATEST) as reader:
        with anyio.fail_after(HANG_GUARD):
            assert len([m async for m in reader]) == sum(COUNTS)
        assert reader.known_lag() == dict(enumerate(COUNTS))  # (from offset 0, as lag())
        assert gauge(metrics) == {}


async def test_a_failing_source_breaks_neither_reading_nor_the_other_points(
    client: LiftbridgeClient,
    three: str,
    instrumentation: Instrumentation,
    metrics: InMemoryMetricReader,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> dict[int, int]:
        raise RuntimeError("broken")

    failing = client.reader(three, cursor_id="a")
    failing.known_lag = broken  # type: ignore[method-assign]
    async with failing, client.reader(three, cursor_id="b") as working:
        with caplog.at_level(logging.WARNING, logger="lbwire"):
            await wait_until(
                lambda: gauge(metrics) == dict(enumerate(COUNTS)), "the working reader's points"
            )
            assert gauge(metrics, **{"messaging.liftbridge.cursor_id": "a"}) == {}
        await take(failing, 2)
        await take(working, 2)
    assert len([r for r in caplog.records if "could not be read" in r.getMessage()]) == 1


async def test_a_group_members_gauge_shows_its_lag(
    client: LiftbridgeClient,
    three: str,
    instrumentation: Instrumentation,
    metrics: InMemoryMetricReader,
) -> None:
    group = f"g-{three}"
    ours = {"messaging.destination.name": three, "messaging.consumer.group.name": group}
    async with client.consumer(
        group, [three], auto_offset=AutoOffset.EARLIEST, auto_checkpoint_interval=None
    ) as consumer:
        await wait_until(
            lambda: gauge(metrics, **ours) == dict(enumerate(COUNTS)), "the gauge counts all"
        )
        with anyio.fail_after(HANG_GUARD):
            async for _ in consumer:
                break
        await consumer.commit({0: 1, 1: 2})  # next offsets: 1 and 2 processed
        lag = await consumer.lag()
        assert lag == {
            GroupPartition(three, 0): COUNTS[0] - 1,
            GroupPartition(three, 1): COUNTS[1] - 2,
            GroupPartition(three, 2): COUNTS[2],
        }
        assert gauge(metrics, **ours) == {key.partition: value for key, value in lag.items()}
        await consumer.commit({p: count for p, count in enumerate(COUNTS)})
        assert gauge(metrics, **ours) == {0: 0, 1: 0, 2: 0}
    assert gauge(metrics, **ours) == {}


def test_the_gauge_holds_no_reader_or_member_alive(idle_client: LiftbridgeClient) -> None:
    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    instrument(idle_client, tracer_provider=TracerProvider(), meter_provider=provider)
    try:
        reader = idle_client.reader("s", cursor_id="c")
        member = idle_client.consumer("g", ["s"])
        refs = [weakref.ref(reader), weakref.ref(member)]
        del reader, member
        gc.collect()
        assert [ref() for ref in refs] == [None, None]
    finally:
        uninstrument(idle_client)
        provider.shutdown()
