"""Spans: one per publish and per unary call, and consumer spans linked to the producer's."""

from __future__ import annotations

import anyio
import pytest
from helpers import aclosing
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from otel_support import finished, ids

from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorInvalidArgument, ErrorNotFound
from lbwire.otel import Instrumentation, message_context
from lbwire.types import Message, StartPosition, StopPosition

pytestmark = pytest.mark.anyio

#: A guard against hangs, never a speed expectation.
HANG_GUARD = 20.0


async def read_all(client: LiftbridgeClient, stream: str) -> list[Message]:
    out = []
    with anyio.fail_after(HANG_GUARD):
        async with aclosing(
            client.subscribe(
                stream,
                start_position=StartPosition.EARLIEST,
                stop_position=StopPosition.STOP_LATEST,
            )
        ) as messages:
            async for message in messages:
                out.append(message)
    return out


async def test_publish_records_one_producer_span_with_the_ack_offset(
    client: LiftbridgeClient,
    stream: str,
    instrumentation: Instrumentation,
    spans: InMemorySpanExporter,
) -> None:
    await client.publish(b"first", stream=stream)
    ack = await client.publish(b"hello", stream=stream, correlation_id="c-42")
    assert ack is not None
    producers = finished(spans, SpanKind.PRODUCER)
    assert len(producers) == 2
    span = producers[1]
    assert span.name == f"publish {stream}"
    assert span.status.status_code == StatusCode.UNSET
    assert dict(span.attributes or {}) == {
        "messaging.system": "liftbridge",
        "messaging.operation.name": "publish",
        "messaging.operation.type": "send",
        "messaging.destination.name": stream,
        "messaging.destination.partition.id": "0",
        "messaging.message.body.size": 5,
        "messaging.message.id": "c-42",
        "messaging.liftbridge.offset": ack.offset,
    }
    assert ack.offset == 1


async def test_publish_leaves_the_callers_headers_unchanged(
    client: LiftbridgeClient, stream: str, instrumentation: Instrumentation
) -> None:
    headers = {"app": b"1"}
    await client.publish(b"x", stream=stream, headers=headers)
    assert headers == {"app": b"1"}
    [message] = await read_all(client, stream)
    assert message.headers["app"] == b"1"
    assert "traceparent" in message.headers


async def test_the_message_carries_the_producer_span_context_as_traceparent(
    client: LiftbridgeClient,
    stream: str,
    instrumentation: Instrumentation,
    spans: InMemorySpanExporter,
) -> None:
    await client.publish(b"x", stream=stream)
    [producer] = finished(spans, SpanKind.PRODUCER)
    [message] = await read_all(client, stream)
    context = producer.get_span_context()
    assert context is not None
    assert message.headers["traceparent"] == (
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}".encode()
    )


async def test_a_received_message_span_links_to_the_producer_span(
    client: LiftbridgeClient,
    stream: str,
    instrumentation: Instrumentation,
    spans: InMemorySpanExporter,
) -> None:
    await client.publish(b"x", stream=stream, correlation_id="m-1")
    [producer] = finished(spans, SpanKind.PRODUCER)
    [message] = await read_all(client, stream)
    [consumer] = finished(spans, SpanKind.CONSUMER)
    assert consumer.name == f"receive {stream}"
    assert [ids(link.context) for link in consumer.links] == [ids(producer.get_span_context())]
    attributes = dict(consumer.attributes or {})
    assert attributes["messaging.operation.type"] == "receive"
    assert attributes["messaging.destination.name"] == stream
    assert attributes["messaging.destination.partition.id"] == "0"
    assert attributes["messaging.liftbridge.offset"] == message.offset
    # The server keeps the correlation id with the message only on some paths.
    assert attributes.get("messaging.message.id", "") == message.correlation_id


async def test_message_context_makes_processing_a_child_of_the_producer(
    client: LiftbridgeClient,
    stream: str,
    instrumentation: Instrumentation,
    spans: InMemorySpanExporter,
) -> None:
    await client.publish(b"x", stream=stream)
    [producer] = finished(spans, SpanKind.PRODUCER)
    [message] = await read_all(client, stream)
    with instrumentation.tracer.start_as_current_span("process", context=message_context(message)):
        pass
    [process] = [span for span in spans.get_finished_spans() if span.name == "process"]
    assert ids(process.parent) == ids(producer.get_span_context())


async def test_a_message_published_without_instrumentation_gets_an_unlinked_span(
    client: LiftbridgeClient,
    stream: str,
    tracer_provider: object,
    spans: InMemorySpanExporter,
) -> None:
    await client.publish(b"plain", stream=stream)
    from lbwire.otel import instrument

    instrument(client, tracer_provider=tracer_provider)  # type: ignore[arg-type]
    [message] = await read_all(client, stream)
    assert "traceparent" not in message.headers
    [consumer] = finished(spans, SpanKind.CONSUMER)
    assert consumer.links == ()


async def test_a_failing_unary_call_records_an_error_span_and_raises_unchanged(
    client: LiftbridgeClient,
    stream_name: str,
    instrumentation: Instrumentation,
    spans: InMemorySpanExporter,
) -> None:
    with pytest.raises(ErrorNotFound) as raised:
        await client.delete_stream(stream_name)
    [span] = finished(spans, SpanKind.CLIENT)
    assert span.name == f"delete_stream {stream_name}"
    assert span.status.status_code == StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == "lbwire.error.ErrorNotFound"
    assert dict(span.attributes or {})["messaging.destination.name"] == stream_name
    [event] = span.events
    assert event.name == "exception"
    # The SDK writes the event: qualified names from SDK 1.2x on, bare before.
    assert dict(event.attributes or {})["exception.type"] in (
        "lbwire.error.ErrorNotFound",
        "ErrorNotFound",
    )
    assert type(raised.value) is ErrorNotFound


async def test_unary_calls_record_client_spans(
    client: LiftbridgeClient,
    stream_name: str,
    instrumentation: Instrumentation,
    spans: InMemorySpanExporter,
) -> None:
    await client.create_stream(stream_name)
    await client.get_partition_metadata(stream_name, 0, wait_for_stream=True)
    names = [span.name for span in finished(spans, SpanKind.CLIENT)]
    assert names[0] == f"create_stream {stream_name}"
    assert names[-1] == f"get_partition_metadata {stream_name}"
    for span in finished(spans, SpanKind.CLIENT):
        assert span.status.status_code == StatusCode.UNSET


async def test_publish_async_records_a_producer_span_and_carries_its_context(
    client: LiftbridgeClient,
    stream: str,
    instrumentation: Instrumentation,
    spans: InMemorySpanExporter,
) -> None:
    headers = {"k": b"v"}
    pending = await client.publish_async(b"x", stream=stream, headers=headers)
    ack = await pending
    assert headers == {"k": b"v"}
    [producer] = finished(spans, SpanKind.PRODUCER)
    attributes = dict(producer.attributes or {})
    assert attributes["messaging.message.id"] == pending.correlation_id == ack.correlationId
    assert attributes["messaging.operation.name"] == "publish_async"
    assert len(await read_all(client, stream)) == 1
    [consumer] = finished(spans, SpanKind.CONSUMER)
    assert [ids(link.context) for link in consumer.links] == [ids(producer.get_span_context())]


async def test_publish_bulk_records_a_create_span_per_message_under_one_send_span(
    client: LiftbridgeClient,
    stream: str,
    instrumentation: Instrumentation,
    spans: InMemorySpanExporter,
) -> None:
    requests = [client.get_publish_request(b"v%d" % i, stream=stream) for i in range(3)]
    with anyio.fail_after(HANG_GUARD):
        responses = [r async for r in client.publish_bulk(requests)]
    assert [r.ack.offset for r in responses] == [0, 1, 2]
    # The caller's requests got their correlation ids (as without
    # instrumentation) and kept their headers.
    assert [r.correlationId for r in requests] == [r.correlationId for r in responses]
    assert all(r.headers == {} for r in requests)
    [batch] = finished(spans, SpanKind.CLIENT)
    assert batch.name == "publish_bulk"
    assert dict(batch.attributes or {})["messaging.batch.message_count"] == 3
    creates = finished(spans, SpanKind.PRODUCER)
    assert [dict(s.attributes or {})["messaging.message.id"] for s in creates] == [
        r.correlationId for r in requests
    ]
    assert all(s.parent == batch.get_span_context() for s in creates)
    messages = await read_all(client, stream)
    consumers = finished(spans, SpanKind.CONSUMER)
    assert [m.value for m in messages] == [b"v0", b"v1", b"v2"]
    assert [ids(c.links[0].context) for c in consumers] == [
        ids(s.get_span_context()) for s in creates
    ]


async def test_publish_to_subject_records_a_producer_span(
    client: LiftbridgeClient,
    stream: str,
    instrumentation: Instrumentation,
    spans: InMemorySpanExporter,
) -> None:
    ack = await client.publish_to_subject(b"x", stream)
    assert ack is not None
    [producer] = finished(spans, SpanKind.PRODUCER)
    assert producer.name == f"publish_to_subject {stream}"
    assert dict(producer.attributes or {})["messaging.liftbridge.offset"] == ack.offset
    [message] = await read_all(client, stream)
    assert "traceparent" in message.headers


async def test_receive_spans_can_be_turned_off(
    client: LiftbridgeClient,
    stream: str,
    tracer_provider: object,
    spans: InMemorySpanExporter,
) -> None:
    from lbwire.otel import instrument

    instrument(client, tracer_provider=tracer_provider, receive_spans=False)  # type: ignore[arg-type]
    await client.publish(b"x", stream=stream)
    assert len(await read_all(client, stream)) == 1
    assert finished(spans, SpanKind.CONSUMER) == []


async def test_a_refused_publish_raises_unchanged_and_its_span_says_why(
    client: LiftbridgeClient, instrumentation: Instrumentation, spans: InMemorySpanExporter
) -> None:
    with pytest.raises(ErrorInvalidArgument, match="needs a stream"):
        await client.publish(b"x")
    [span] = finished(spans, SpanKind.PRODUCER)
    assert span.name == "publish"
    assert span.status.status_code == StatusCode.ERROR
    assert "messaging.destination.name" not in dict(span.attributes or {})
