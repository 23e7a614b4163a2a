"""`Instrumentation`: the wrappers and instruments of one instrumented client."""

from __future__ import annotations

import copy
import functools
import inspect
import os
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.metrics import MeterProvider, get_meter_provider
from opentelemetry.trace import Link, Span, SpanKind, TracerProvider

from ..observer import ClientObserver
from ._conventions import (
    GETTER,
    SCHEMA_URL,
    SYSTEM,
    Attributes,
    TallyKey,
    attributes_for_message,
    base_attributes,
    count_message,
    error_type,
    metric_attributes_of,
    name_span,
    observe_tallies,
    record_error,
    seconds_histogram,
    size,
    tally_of,
    with_context,
)
from ._lag import LAG_METRIC, LagSources

if TYPE_CHECKING:
    from ..client import LiftbridgeClient

__all__ = ["Instrumentation"]

#: Unary calls: method name -> messaging.operation.type (None: not a messaging operation).
_UNARY: Dict[str, Optional[str]] = {
    "create_stream": None,
    "delete_stream": None,
    "pause_stream": None,
    "set_stream_readonly": None,
    "get_metadata": None,
    "get_partition_metadata": None,
    "set_cursor": "settle",
    "get_cursor": None,
    "join_consumer_group": None,
    "leave_consumer_group": None,
    "fetch_consumer_group_assignments": None,
    "report_consumer_group_coordinator": None,
    "fetch_consumer_group_metadata": None,
    "get_consumer_group_metadata": None,
}
_WRAPPED = (
    *_UNARY,
    "publish",
    "publish_to_subject",
    "publish_async",
    "publish_bulk",
    "subscribe",
    "reader",
    "consumer",
)
#: The client attribute the client reads its `ClientObserver` from.
_OBSERVER_ATTRIBUTE = "observer"


class Instrumentation:
    """The wrappers and instruments of one instrumented client (see `instrument`)."""

    def __init__(
        self,
        client: LiftbridgeClient,
        *,
        tracer_provider: Optional[TracerProvider] = None,
        meter_provider: Optional[MeterProvider] = None,
        receive_spans: bool = True,
    ) -> None:
        from .. import __version__

        self.client = client
        self.receive_spans = receive_spans
        self.tracer = trace.get_tracer(
            "lbwire.otel", __version__, tracer_provider, schema_url=SCHEMA_URL
        )
        # The provider's get_meter takes a schema URL in every API since 1.20;
        # opentelemetry.metrics.get_meter only from 1.22.
        meter = (meter_provider or get_meter_provider()).get_meter(
            "lbwire.otel", __version__, SCHEMA_URL
        )
        # Message and byte counts are the per-message metrics: tallied in
        # plain integers and reported when a reader collects (observable
        # counters), since a synchronous Counter.add with attributes costs
        # more than lbwire's whole per-message receive path.
        self._sent: Dict[TallyKey, List[int]] = {}
        self._consumed: Dict[TallyKey, List[int]] = {}
        meter.create_observable_counter(
            "messaging.client.sent.messages",
            [observe_tallies(self._sent, 0)],
            "{message}",
            "Messages published",
        )
        meter.create_observable_counter(
            "lbwire.client.sent.bytes",
            [observe_tallies(self._sent, 1)],
            "By",
            "Bytes of message values published",
        )
        meter.create_observable_counter(
            "messaging.client.consumed.messages",
            [observe_tallies(self._consumed, 0)],
            "{message}",
            "Messages received",
        )
        meter.create_observable_counter(
            "lbwire.client.consumed.bytes",
            [observe_tallies(self._consumed, 1)],
            "By",
            "Bytes of message values received",
        )
        self.acks = meter.create_counter("lbwire.client.acks", "{ack}", "Publish acks received")
        self.ack_duration = seconds_histogram(
            meter, "lbwire.client.ack.duration", "Time from publishing a message to its ack"
        )
        self.operation_duration = seconds_histogram(
            meter, "messaging.client.operation.duration", "Duration of lbwire calls"
        )
        self.retries = meter.create_counter(
            "lbwire.client.retries", "{retry}", "Calls tried again after a failure"
        )
        self.reconnects = meter.create_counter(
            "lbwire.client.reconnects", "{connection}", "Broker connections made again"
        )
        self.resubscribes = meter.create_counter(
            "lbwire.client.resubscribes", "{subscription}", "Subscriptions resumed elsewhere"
        )
        self._lag = LagSources()
        meter.create_observable_gauge(
            LAG_METRIC,
            [self._lag.observe],
            "{message}",
            "Messages after the committed position, per partition of each reader and member",
        )
        self._previous_observer: Any = getattr(client, _OBSERVER_ATTRIBUTE, None)
        self._wrap()

    # ------------------------------------------------------------------ wrapping

    def _wrap(self) -> None:
        client = self.client
        for name, operation_type in _UNARY.items():
            original = getattr(client, name)
            setattr(client, name, self._unary(name, operation_type, original))
        for name, factory in (
            ("publish", self._publish),
            ("publish_to_subject", self._publish_to_subject),
            ("publish_async", self._publish_async),
            ("publish_bulk", self._publish_bulk),
            ("subscribe", self._subscribe),
            ("reader", self._reader),
            ("consumer", self._consumer),
        ):
            original = getattr(client, name)
            setattr(client, name, functools.wraps(original)(factory(original)))
        observer: ClientObserver = self  # checked by mypy: the protocol is met
        setattr(client, _OBSERVER_ATTRIBUTE, observer)

    def remove(self) -> None:
        """Restore the client's own methods and its previous observer."""
        client = self.client
        for name in _WRAPPED:
            vars(client).pop(name, None)
        self._lag.clear()
        setattr(client, _OBSERVER_ATTRIBUTE, self._previous_observer)

    @contextmanager
    def _span(
        self,
        name: str,
        kind: SpanKind,
        attributes: Attributes,
        metric_attributes: Attributes,
    ) -> Iterator[Span]:
        """A current span and an operation-duration measurement around a call."""
        span = self.tracer.start_span(name, kind=kind, attributes=attributes)
        token = otel_context.attach(trace.set_span_in_context(span))
        start = time.perf_counter()
        try:
            yield span
        except Exception as exc:
            record_error(span, exc)
            metric_attributes = {**metric_attributes, "error.type": error_type(exc)}
            raise
        finally:
            otel_context.detach(token)
            span.end()
            self.operation_duration.record(time.perf_counter() - start, metric_attributes)

    def _unary(
        self, name: str, operation_type: Optional[str], original: Callable[..., Any]
    ) -> Callable[..., Any]:
        signature = inspect.signature(original)

        @functools.wraps(original)
        async def call(*args: Any, **kwargs: Any) -> Any:
            try:
                arguments = signature.bind(*args, **kwargs).arguments
            except TypeError:
                return await original(*args, **kwargs)  # the client reports the misuse
            attributes = base_attributes(name, operation_type)
            destination = arguments.get("stream", arguments.get("name"))
            if isinstance(destination, str) and destination:
                attributes["messaging.destination.name"] = destination
            partition = arguments.get("partition")
            if isinstance(partition, int):
                attributes["messaging.destination.partition.id"] = str(partition)
            group = arguments.get("group_id")
            if isinstance(group, str):
                attributes["messaging.consumer.group.name"] = group
            cursor = arguments.get("cursor_id")
            if isinstance(cursor, str):
                attributes["messaging.liftbridge.cursor_id"] = cursor
            span_name = name_span(name, destination)
            with self._span(
                span_name, SpanKind.CLIENT, attributes, metric_attributes_of(attributes)
            ):
                return await original(*args, **kwargs)

        return call

    def _publish(self, original: Callable[..., Any]) -> Callable[..., Any]:
        client = self.client

        async def publish(value: Any, *args: Any, **kwargs: Any) -> Any:
            stream = kwargs.get("stream")
            partition = kwargs.get("partition")
            if partition is None and not (kwargs.get("partitioner") or client.partitioner):
                partition = 0  # where the client sends it
            return await self._traced_publish(
                original, "publish", stream, partition, value, args, kwargs
            )

        return publish

    def _publish_to_subject(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def publish_to_subject(value: Any, subject: Any, *args: Any, **kwargs: Any) -> Any:
            return await self._traced_publish(
                original, "publish_to_subject", subject, None, value, (subject, *args), kwargs
            )

        return publish_to_subject

    async def _traced_publish(
        self,
        original: Callable[..., Any],
        operation: str,
        destination: Any,
        partition: Any,
        value: Any,
        args: Tuple[Any, ...],
        kwargs: Dict[str, Any],
    ) -> Any:
        attributes = attributes_for_message(operation, "send", destination, partition, value)
        correlation_id = kwargs.get("correlation_id")
        if correlation_id:
            attributes["messaging.message.id"] = str(correlation_id)
        metric_attributes = metric_attributes_of(attributes)
        with self._span(
            name_span(operation, destination), SpanKind.PRODUCER, attributes, metric_attributes
        ) as span:
            kwargs["headers"] = with_context(kwargs.get("headers"))
            start = time.perf_counter()
            ack = await original(value, *args, **kwargs)
            latency = time.perf_counter() - start
            count_message(self._sent, metric_attributes, size(value))
            if ack is not None:
                span.set_attribute("messaging.liftbridge.offset", ack.offset)
                if ack.correlationId and not correlation_id:
                    span.set_attribute("messaging.message.id", ack.correlationId)
                self.acks.add(1, metric_attributes)
                self.ack_duration.record(latency, metric_attributes)
            return ack

    def _publish_async(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def publish_async(value: Any, *args: Any, **kwargs: Any) -> Any:
            stream = kwargs.get("stream")
            attributes = attributes_for_message(
                "publish_async", "send", stream, kwargs.get("partition"), value
            )
            if not kwargs.get("correlation_id"):
                # Set here rather than by the client, to name the message in its span.
                kwargs["correlation_id"] = os.urandom(16).hex()
            attributes["messaging.message.id"] = str(kwargs["correlation_id"])
            metric_attributes = metric_attributes_of(attributes)
            with self._span(
                name_span("publish_async", stream),
                SpanKind.PRODUCER,
                attributes,
                metric_attributes,
            ):
                kwargs["headers"] = with_context(kwargs.get("headers"))
                pending = await original(value, *args, **kwargs)
                count_message(self._sent, metric_attributes, size(value))
                return pending

        return publish_async

    def _publish_bulk(self, original: Callable[..., Any]) -> Callable[..., Any]:
        tracer = self.tracer

        async def publish_bulk(
            iter_req: Iterable[Any], *args: Any, **kwargs: Any
        ) -> AsyncIterator[Any]:
            attributes = base_attributes("publish_bulk", "send")
            batch = tracer.start_span("publish_bulk", kind=SpanKind.CLIENT, attributes=attributes)
            batch_context = trace.set_span_in_context(batch)
            count = 0

            def with_contexts() -> Iterator[Any]:
                # Pulled by the client as it sends: a "create" span per message,
                # its context in a copy of the request's headers.
                nonlocal count
                for request in iter_req:
                    if not request.correlationId:
                        # What the client would do, done first to name the message.
                        request.correlationId = os.urandom(16).hex()
                    message_attributes = attributes_for_message(
                        "publish_bulk",
                        "create",
                        request.stream,
                        request.partition,
                        request.value,
                    )
                    message_attributes["messaging.message.id"] = request.correlationId
                    span = tracer.start_span(
                        name_span("create", request.stream),
                        context=batch_context,
                        kind=SpanKind.PRODUCER,
                        attributes=message_attributes,
                    )
                    traced = copy.copy(request)
                    traced.headers = with_context(request.headers, trace.set_span_in_context(span))
                    span.end()
                    metric_attributes = metric_attributes_of(message_attributes)
                    count_message(self._sent, metric_attributes, len(request.value))
                    count += 1
                    yield traced

            responses = original(with_contexts(), *args, **kwargs)
            start = time.perf_counter()
            error: Optional[str] = None
            try:
                async for response in responses:
                    yield response
            except Exception as exc:
                record_error(batch, exc)
                error = error_type(exc)
                raise
            finally:
                await responses.aclose()
                batch.set_attribute("messaging.batch.message_count", count)
                batch.end()
                metric_attributes = metric_attributes_of(attributes)
                if error is not None:
                    metric_attributes["error.type"] = error
                self.operation_duration.record(time.perf_counter() - start, metric_attributes)

        return publish_bulk

    def _subscribe(self, original: Callable[..., Any]) -> Callable[..., Any]:
        tracer = self.tracer
        receive_spans = self.receive_spans

        async def subscribe(stream: str, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            fields = propagate.get_global_textmap().fields
            span_name = name_span("receive", stream)
            span_attributes = attributes_for_message(
                "subscribe", "receive", stream, kwargs.get("partition") or 0, None
            )
            tally = tally_of(self._consumed, metric_attributes_of(span_attributes))
            messages = original(stream, *args, **kwargs)
            try:
                async for message in messages:
                    if receive_spans:
                        headers = message.headers
                        links = None
                        if headers and not fields.isdisjoint(headers):
                            producer = trace.get_current_span(
                                propagate.extract(headers, getter=GETTER)
                            ).get_span_context()
                            if producer.is_valid:
                                links = [Link(producer)]
                        attributes = dict(span_attributes)
                        attributes["messaging.liftbridge.offset"] = message.offset
                        if isinstance(message.value, bytes):  # (not deserialized)
                            attributes["messaging.message.body.size"] = len(message.value)
                        if message.correlation_id:
                            attributes["messaging.message.id"] = message.correlation_id
                        tracer.start_span(
                            span_name, kind=SpanKind.CONSUMER, attributes=attributes, links=links
                        ).end()
                    tally[0] += 1
                    tally[1] += size(message.value)
                    yield message
            finally:
                await messages.aclose()

        return subscribe

    def _reader(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def reader(*args: Any, **kwargs: Any) -> Any:
            made = original(*args, **kwargs)
            if made.cursor_id is not None:  # without one, nothing is committed
                self._lag.add(
                    made,
                    {
                        "messaging.system": SYSTEM,
                        "messaging.destination.name": made.stream,
                        "messaging.liftbridge.cursor_id": made.cursor_id,
                    },
                )
            return made

        return reader

    def _consumer(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def consumer(*args: Any, **kwargs: Any) -> Any:
            made = original(*args, **kwargs)
            self._lag.add(
                made,
                {"messaging.system": SYSTEM, "messaging.consumer.group.name": made.group_id},
            )
            return made

        return consumer

    # ------------------------------------------------------------------ ClientObserver

    def on_retry(self, method: str, attempt: int, error: BaseException) -> None:
        """Count a retry, and note it on the current span."""
        attributes: Attributes = {
            "messaging.system": SYSTEM,
            "messaging.operation.name": method,
            "error.type": error_type(error),
        }
        self.retries.add(1, attributes)
        trace.get_current_span().add_event(
            "lbwire.retry", {"lbwire.attempt": attempt, "error.type": error_type(error)}
        )

    def on_reconnect(self, broker: str) -> None:
        """Count a reconnect."""
        host, _, port = broker.rpartition(":")
        attributes: Attributes = {"messaging.system": SYSTEM, "server.address": host.strip("[]")}
        if port.isdigit():
            attributes["server.port"] = int(port)
        self.reconnects.add(1, attributes)

    def on_resubscribe(self, stream: str, partition: int, error: BaseException) -> None:
        """Count a resubscribe."""
        self.resubscribes.add(
            1,
            {
                "messaging.system": SYSTEM,
                "messaging.destination.name": stream,
                "messaging.destination.partition.id": str(partition),
                "error.type": error_type(error),
            },
        )

    def on_ack(self, stream: str, partition: int, latency: float) -> None:
        """Count a pipelined publish's ack and record its latency."""
        attributes: Attributes = {
            "messaging.system": SYSTEM,
            "messaging.destination.name": stream,
            "messaging.destination.partition.id": str(partition),
        }
        self.acks.add(1, attributes)
        self.ack_duration.record(latency, attributes)
