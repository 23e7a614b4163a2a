"""OpenTelemetry tracing and metrics for a `LiftbridgeClient` (the `lbwire[otel]` extra).

Call `instrument(client)` once after creating the client:

```python
from lbwire.otel import instrument

async with LiftbridgeClient(["127.0.0.1:9292"]) as client:
    instrument(client)  # the global tracer and meter providers
    await client.publish(b"hello", stream="orders")
```

Design:

- **Opt-in, per client, nothing imported otherwise.** Only this module imports
  `opentelemetry` (the API package alone: the SDK and exporters are the
  application's choice). `lbwire.client` never imports it, so an
  uninstrumented client pays nothing: no wrapper, no check per call.
- **Wrapping the public API, not the client's internals.** `instrument`
  replaces the instance's public methods (publish, publish_async,
  publish_bulk, publish_to_subject, subscribe and every unary call) by
  wrappers on that instance only; `uninstrument` removes them. The client's
  own calls between its public methods (publish's `wait_for_stream`, for
  example) go through the instance too, so they appear as child spans.
  Instrumenting an instrumented client raises `ErrorInvalidArgument`: two
  wrappers would record everything twice.
- **Events the public API cannot see** (retries, reconnects, resubscribes,
  acks of pipelined publishes) reach the instrumentation through
  `lbwire.observer.ClientObserver` (re-exported here), a small protocol the
  client calls when it has an observer in its `observer` attribute;
  `instrument` installs its `Instrumentation` there. That module imports no
  OpenTelemetry, so the client can name the protocol.
- **Spans follow the OpenTelemetry messaging semantic conventions** (1.27+):
  a PRODUCER span per publish (`messaging.operation.type` "send"), a CLIENT
  span per unary call, a CONSUMER span per received message ("receive"),
  `messaging.system` "liftbridge", the stream as `messaging.destination.name`,
  the partition as `messaging.destination.partition.id`, the correlation id
  as `messaging.message.id` and the ack's offset as
  `messaging.liftbridge.offset`. `publish_bulk` gets a CLIENT "send" span for
  the batch and a PRODUCER "create" span per message, as the conventions ask
  for batches. Failures set status ERROR, record the exception and
  `error.type`, and propagate unchanged; cancellation is not an error.
- **Trace context in the message headers.** Publishes carry the producer
  span's context in the headers the global propagator writes (W3C
  `traceparent`/`tracestate` by default), as UTF-8 bytes, in a copy of the
  caller's headers. Each received message's CONSUMER span links to the
  context found in its headers; `message_context` gives it to an application
  that wants its processing span to be the producer's child. The headers stay
  in `Message.headers`.
- **Subscribe path cost.** Per message: one membership test of the headers,
  an extraction only when they carry a context, one span started and ended
  (`receive_spans=False` drops it; a sampler that drops the trace makes it a
  non-recording span) and two integer additions: message and byte counts are
  tallied per attribute set and reported through observable counters when a
  metric reader collects, instead of a synchronous counter call per message.

Metrics (instrument names; attributes `messaging.system`,
`messaging.destination.name` and, where known, `messaging.destination.partition.id`):
`messaging.client.sent.messages`, `lbwire.client.sent.bytes`,
`messaging.client.consumed.messages`, `lbwire.client.consumed.bytes`,
`lbwire.client.acks`, `lbwire.client.ack.duration` (s),
`messaging.client.operation.duration` (s, every instrumented call),
`lbwire.client.retries`, `lbwire.client.reconnects`, `lbwire.client.resubscribes`.
Byte counts are message values (after decompression on receive).
"""

from __future__ import annotations

import copy
import functools
import inspect
import os
import time
import weakref
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.metrics import (
    CallbackOptions,
    Histogram,
    Meter,
    MeterProvider,
    Observation,
    get_meter_provider,
)
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.util.types import AttributeValue

from .error import ErrorInvalidArgument
from .observer import ClientObserver

if TYPE_CHECKING:
    from .client import LiftbridgeClient
    from .types import Message

__all__ = ["ClientObserver", "Instrumentation", "instrument", "message_context", "uninstrument"]

_SYSTEM = "liftbridge"
_SCHEMA_URL = "https://opentelemetry.io/schemas/1.27.0"
_Attributes = Dict[str, AttributeValue]

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
}
_WRAPPED = (*_UNARY, "publish", "publish_to_subject", "publish_async", "publish_bulk", "subscribe")
#: The client attribute the client reads its `ClientObserver` from.
_OBSERVER_ATTRIBUTE = "observer"
_ABSENT = object()


class _BytesSetter(Setter[Dict[str, bytes]]):
    def set(self, carrier: Dict[str, bytes], key: str, value: str) -> None:
        carrier[key] = value.encode()


class _BytesGetter(Getter[Dict[str, bytes]]):
    def get(self, carrier: Dict[str, bytes], key: str) -> Optional[List[str]]:
        value = carrier.get(key)
        if value is None:
            return None
        return [value.decode("utf-8", "replace")]

    def keys(self, carrier: Dict[str, bytes]) -> List[str]:
        return list(carrier)


_SETTER = _BytesSetter()
_GETTER = _BytesGetter()

_instrumented: weakref.WeakKeyDictionary[LiftbridgeClient, Instrumentation] = (
    weakref.WeakKeyDictionary()
)


def message_context(message: Message) -> otel_context.Context:
    """The producer's trace context carried in a received message's headers.

    Use it as the parent of the span that processes the message:
    `tracer.start_as_current_span("process", context=message_context(msg))`.
    Without a context in the headers the result is an empty context.
    """
    return propagate.extract(message.headers or {}, getter=_GETTER)


def instrument(
    client: LiftbridgeClient,
    *,
    tracer_provider: Optional[TracerProvider] = None,
    meter_provider: Optional[MeterProvider] = None,
    receive_spans: bool = True,
) -> Instrumentation:
    """Trace and measure `client`'s calls until `uninstrument(client)`.

    Args:
        client: The client to instrument (this instance only).
        tracer_provider: Where spans go (the global provider if None).
        meter_provider: Where metrics go (the global provider if None).
        receive_spans: A CONSUMER span per received message; with False
            subscriptions record metrics only.

    Returns:
        The instrumentation, which is also the client's `ClientObserver`.

    Raises:
        ErrorInvalidArgument: The client is instrumented already.
    """
    if client in _instrumented:
        raise ErrorInvalidArgument(
            "This LiftbridgeClient is instrumented already; call uninstrument(client) first"
        )
    instrumentation = Instrumentation(
        client,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        receive_spans=receive_spans,
    )
    _instrumented[client] = instrumentation
    return instrumentation


def uninstrument(client: LiftbridgeClient) -> None:
    """Remove `instrument`'s wrappers and observer from `client` (no-op if none)."""
    instrumentation = _instrumented.pop(client, None)
    if instrumentation is not None:
        instrumentation.remove()


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
        from . import __version__

        self.client = client
        self.receive_spans = receive_spans
        self.tracer = trace.get_tracer(
            "lbwire.otel", __version__, tracer_provider, schema_url=_SCHEMA_URL
        )
        # The provider's get_meter takes a schema URL in every API since 1.20;
        # opentelemetry.metrics.get_meter only from 1.22.
        meter = (meter_provider or get_meter_provider()).get_meter(
            "lbwire.otel", __version__, _SCHEMA_URL
        )
        # Message and byte counts are the per-message metrics: tallied in
        # plain integers and reported when a reader collects (observable
        # counters), since a synchronous Counter.add with attributes costs
        # more than lbwire's whole per-message receive path.
        self._sent: Dict[_TallyKey, List[int]] = {}
        self._consumed: Dict[_TallyKey, List[int]] = {}
        meter.create_observable_counter(
            "messaging.client.sent.messages",
            [_observe(self._sent, 0)],
            "{message}",
            "Messages published",
        )
        meter.create_observable_counter(
            "lbwire.client.sent.bytes",
            [_observe(self._sent, 1)],
            "By",
            "Bytes of message values published",
        )
        meter.create_observable_counter(
            "messaging.client.consumed.messages",
            [_observe(self._consumed, 0)],
            "{message}",
            "Messages received",
        )
        meter.create_observable_counter(
            "lbwire.client.consumed.bytes",
            [_observe(self._consumed, 1)],
            "By",
            "Bytes of message values received",
        )
        self.acks = meter.create_counter("lbwire.client.acks", "{ack}", "Publish acks received")
        self.ack_duration = _seconds_histogram(
            meter, "lbwire.client.ack.duration", "Time from publishing a message to its ack"
        )
        self.operation_duration = _seconds_histogram(
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
        self._previous_observer: Any = vars(client).get(_OBSERVER_ATTRIBUTE, _ABSENT)
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
        if self._previous_observer is _ABSENT:
            vars(client).pop(_OBSERVER_ATTRIBUTE, None)
        else:
            setattr(client, _OBSERVER_ATTRIBUTE, self._previous_observer)

    @contextmanager
    def _span(
        self,
        name: str,
        kind: SpanKind,
        attributes: _Attributes,
        metric_attributes: _Attributes,
    ) -> Iterator[Span]:
        """A current span and an operation-duration measurement around a call."""
        span = self.tracer.start_span(name, kind=kind, attributes=attributes)
        token = otel_context.attach(trace.set_span_in_context(span))
        start = time.perf_counter()
        try:
            yield span
        except Exception as exc:
            _record_error(span, exc)
            metric_attributes = {**metric_attributes, "error.type": _error_type(exc)}
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
            attributes = _base_attributes(name, operation_type)
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
            span_name = f"{name} {destination}" if destination else name
            with self._span(span_name, SpanKind.CLIENT, attributes, _metric(attributes)):
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
        attributes = _message_attributes(operation, "send", destination, partition, value)
        correlation_id = kwargs.get("correlation_id")
        if correlation_id:
            attributes["messaging.message.id"] = str(correlation_id)
        metric_attributes = _metric(attributes)
        with self._span(
            f"{operation} {destination}", SpanKind.PRODUCER, attributes, metric_attributes
        ) as span:
            kwargs["headers"] = _with_context(kwargs.get("headers"))
            start = time.perf_counter()
            ack = await original(value, *args, **kwargs)
            latency = time.perf_counter() - start
            _count(self._sent, metric_attributes, _size(value))
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
            attributes = _message_attributes(
                "publish_async", "send", stream, kwargs.get("partition"), value
            )
            if not kwargs.get("correlation_id"):
                # Set here rather than by the client, to name the message in its span.
                kwargs["correlation_id"] = os.urandom(16).hex()
            attributes["messaging.message.id"] = str(kwargs["correlation_id"])
            metric_attributes = _metric(attributes)
            with self._span(
                f"publish_async {stream}", SpanKind.PRODUCER, attributes, metric_attributes
            ):
                kwargs["headers"] = _with_context(kwargs.get("headers"))
                pending = await original(value, *args, **kwargs)
                _count(self._sent, metric_attributes, _size(value))
                return pending

        return publish_async

    def _publish_bulk(self, original: Callable[..., Any]) -> Callable[..., Any]:
        tracer = self.tracer

        async def publish_bulk(
            iter_req: Iterable[Any], *args: Any, **kwargs: Any
        ) -> AsyncIterator[Any]:
            attributes = _base_attributes("publish_bulk", "send")
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
                    message_attributes = _message_attributes(
                        "publish_bulk",
                        "create",
                        request.stream,
                        request.partition,
                        request.value,
                    )
                    message_attributes["messaging.message.id"] = request.correlationId
                    span = tracer.start_span(
                        f"create {request.stream}",
                        context=batch_context,
                        kind=SpanKind.PRODUCER,
                        attributes=message_attributes,
                    )
                    traced = copy.copy(request)
                    traced.headers = _with_context(request.headers, trace.set_span_in_context(span))
                    span.end()
                    metric_attributes = _metric(message_attributes)
                    _count(self._sent, metric_attributes, len(request.value))
                    count += 1
                    yield traced

            responses = original(with_contexts(), *args, **kwargs)
            start = time.perf_counter()
            error: Optional[str] = None
            try:
                async for response in responses:
                    yield response
            except Exception as exc:
                _record_error(batch, exc)
                error = _error_type(exc)
                raise
            finally:
                await responses.aclose()
                batch.set_attribute("messaging.batch.message_count", count)
                batch.end()
                metric_attributes = _metric(attributes)
                if error is not None:
                    metric_attributes["error.type"] = error
                self.operation_duration.record(time.perf_counter() - start, metric_attributes)

        return publish_bulk

    def _subscribe(self, original: Callable[..., Any]) -> Callable[..., Any]:
        tracer = self.tracer
        receive_spans = self.receive_spans

        async def subscribe(stream: str, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            fields = propagate.get_global_textmap().fields
            span_name = f"receive {stream}"
            span_attributes = _message_attributes(
                "subscribe", "receive", stream, kwargs.get("partition") or 0, None
            )
            tally = _tally(self._consumed, _metric(span_attributes))
            messages = original(stream, *args, **kwargs)
            try:
                async for message in messages:
                    if receive_spans:
                        headers = message.headers
                        links = None
                        if headers and not fields.isdisjoint(headers):
                            producer = trace.get_current_span(
                                propagate.extract(headers, getter=_GETTER)
                            ).get_span_context()
                            if producer.is_valid:
                                links = [Link(producer)]
                        attributes = dict(span_attributes)
                        attributes["messaging.liftbridge.offset"] = message.offset
                        attributes["messaging.message.body.size"] = len(message.value)
                        if message.correlation_id:
                            attributes["messaging.message.id"] = message.correlation_id
                        tracer.start_span(
                            span_name, kind=SpanKind.CONSUMER, attributes=attributes, links=links
                        ).end()
                    tally[0] += 1
                    tally[1] += len(message.value)
                    yield message
            finally:
                await messages.aclose()

        return subscribe

    # ------------------------------------------------------------------ ClientObserver

    def on_retry(self, method: str, attempt: int, error: BaseException) -> None:
        """Count a retry, and note it on the current span."""
        attributes: _Attributes = {
            "messaging.system": _SYSTEM,
            "messaging.operation.name": method,
            "error.type": _error_type(error),
        }
        self.retries.add(1, attributes)
        trace.get_current_span().add_event(
            "lbwire.retry", {"lbwire.attempt": attempt, "error.type": _error_type(error)}
        )

    def on_reconnect(self, broker: str) -> None:
        """Count a reconnect."""
        host, _, port = broker.rpartition(":")
        attributes: _Attributes = {"messaging.system": _SYSTEM, "server.address": host.strip("[]")}
        if port.isdigit():
            attributes["server.port"] = int(port)
        self.reconnects.add(1, attributes)

    def on_resubscribe(self, stream: str, partition: int, error: BaseException) -> None:
        """Count a resubscribe."""
        self.resubscribes.add(
            1,
            {
                "messaging.system": _SYSTEM,
                "messaging.destination.name": stream,
                "messaging.destination.partition.id": str(partition),
                "error.type": _error_type(error),
            },
        )

    def on_ack(self, stream: str, partition: int, latency: float) -> None:
        """Count a pipelined publish's ack and record its latency."""
        attributes: _Attributes = {
            "messaging.system": _SYSTEM,
            "messaging.destination.name": stream,
            "messaging.destination.partition.id": str(partition),
        }
        self.acks.add(1, attributes)
        self.ack_duration.record(latency, attributes)


# ---------------------------------------------------------------------- helpers

#: Span attributes that are also metric attributes (low cardinality).
_METRIC_KEYS = (
    "messaging.system",
    "messaging.operation.name",
    "messaging.operation.type",
    "messaging.destination.name",
    "messaging.destination.partition.id",
    "messaging.consumer.group.name",
)


#: Bucket bounds (s) the semantic conventions give for messaging durations.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)


def _seconds_histogram(meter: Meter, name: str, description: str) -> Histogram:
    try:
        return meter.create_histogram(
            name, "s", description, explicit_bucket_boundaries_advisory=_DURATION_BUCKETS
        )
    except TypeError:
        # The advice appeared in opentelemetry-api 1.23; older SDKs use their
        # default buckets (meant for milliseconds) unless a View sets them.
        return meter.create_histogram(name, "s", description)


#: A tally's attributes, hashable: sorted (key, value) pairs.
_TallyKey = Tuple[Tuple[str, AttributeValue], ...]


def _tally(tallies: Dict[_TallyKey, List[int]], attributes: _Attributes) -> List[int]:
    """The [messages, bytes] tally of an attribute set, created at zero."""
    key = tuple(sorted(attributes.items()))
    tally = tallies.get(key)
    if tally is None:
        tally = tallies[key] = [0, 0]
    return tally


def _count(tallies: Dict[_TallyKey, List[int]], attributes: _Attributes, size: int) -> None:
    tally = _tally(tallies, attributes)
    tally[0] += 1
    tally[1] += size


def _observe(
    tallies: Dict[_TallyKey, List[int]], index: int
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    """An observable counter's callback: the tallies' totals (0: messages, 1: bytes)."""

    def observe(options: CallbackOptions) -> Iterable[Observation]:
        # A reader may collect from its own thread: list() copies the items
        # in one step, so a tally created meanwhile cannot break the loop.
        return [Observation(tally[index], dict(key)) for key, tally in list(tallies.items())]

    return observe


def _metric(attributes: _Attributes) -> _Attributes:
    return {key: attributes[key] for key in _METRIC_KEYS if key in attributes}


def _base_attributes(operation: str, operation_type: Optional[str]) -> _Attributes:
    attributes: _Attributes = {
        "messaging.system": _SYSTEM,
        "messaging.operation.name": operation,
    }
    if operation_type is not None:
        attributes["messaging.operation.type"] = operation_type
    return attributes


def _message_attributes(
    operation: str, operation_type: str, destination: Any, partition: Any, value: Any
) -> _Attributes:
    attributes = _base_attributes(operation, operation_type)
    if isinstance(destination, str) and destination:
        attributes["messaging.destination.name"] = destination
    if isinstance(partition, int):
        attributes["messaging.destination.partition.id"] = str(partition)
    if value is not None:
        attributes["messaging.message.body.size"] = _size(value)
    return attributes


def _size(value: Any) -> int:
    return value.nbytes if isinstance(value, memoryview) else len(value)


def _with_context(headers: Any, context: Optional[otel_context.Context] = None) -> Any:
    """A copy of `headers` with the trace context added (the caller's dict stays as it was).

    Anything but a dict or None is returned as it is, for the client to refuse.
    """
    if headers is None:
        carrier: Dict[str, bytes] = {}
    elif isinstance(headers, dict):
        carrier = dict(headers)
    else:
        return headers
    propagate.inject(carrier, context, setter=_SETTER)
    return carrier


def _error_type(error: BaseException) -> str:
    # The conventions ask for the exception's fully qualified name.
    kind = type(error)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _record_error(span: Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, str(error)))
    span.set_attribute("error.type", _error_type(error))
