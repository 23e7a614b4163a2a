"""Consumer groups and cursors through an instrumented client."""

from __future__ import annotations

import anyio
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from otel_support import finished, ids

from lbwire.client import LiftbridgeClient
from lbwire.consumer import AutoOffset
from lbwire.otel import Instrumentation

pytestmark = pytest.mark.anyio

#: A guard against hangs, never a speed expectation.
HANG_GUARD = 30.0


async def test_a_group_members_messages_get_consumer_spans_linked_to_the_producer(
    client: LiftbridgeClient,
    stream: str,
    instrumentation: Instrumentation,
    spans: InMemorySpanExporter,
) -> None:
    await client.publish(b"order", stream=stream)
    [producer] = finished(spans, SpanKind.PRODUCER)
    group = f"g-{stream}"
    with anyio.fail_after(HANG_GUARD):
        async with client.consumer(group, [stream], auto_offset=AutoOffset.EARLIEST) as consumer:
            async for message in consumer:
                assert message.value == b"order"
                break
    [received] = finished(spans, SpanKind.CONSUMER)
    assert [ids(link.context) for link in received.links] == [ids(producer.get_span_context())]
    calls = {span.name: span for span in finished(spans, SpanKind.CLIENT)}
    assert (
        dict(calls["join_consumer_group"].attributes or {})["messaging.consumer.group.name"]
        == group
    )


async def test_set_cursor_records_a_settle_span(
    client: LiftbridgeClient,
    stream: str,
    instrumentation: Instrumentation,
    spans: InMemorySpanExporter,
) -> None:
    await client.wait_for_cursors(timeout=HANG_GUARD)
    await client.set_cursor(stream, 0, "reader", 4)
    assert await client.get_cursor(stream, 0, "reader") == 5
    calls = [
        span for span in finished(spans, SpanKind.CLIENT) if span.name.endswith(f"_cursor {stream}")
    ]
    assert [span.name for span in calls] == [f"set_cursor {stream}", f"get_cursor {stream}"]
    attributes = dict(calls[0].attributes or {})
    assert attributes["messaging.operation.type"] == "settle"
    assert attributes["messaging.destination.partition.id"] == "0"
    assert attributes["messaging.liftbridge.cursor_id"] == "reader"
