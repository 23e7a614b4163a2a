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
  publish_bulk, publish_to_subject, subscribe, reader, consumer and every
  unary call) by wrappers on that instance only; `uninstrument` removes
  them. The client's own calls between its public methods (publish's
  `wait_for_stream`, for example) go through the instance too, so they
  appear as child spans.
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
`lbwire.client.consumer.lag` is a gauge: per partition of each open reader
with a cursor (`client.reader`) and each group member (`client.consumer`)
made after `instrument`, the lag its `known_lag()` reports, with the cursor
id or the group name. The conventions name no lag metric, hence lbwire's
own name. The callback reads values the readers and members hold (no call
to a broker); it holds them weakly, and one that is closed reports nothing.

The package: this module holds the public functions; `_instrumentation` the
wrappers and instruments of one client; `_conventions` the attribute names,
the header carrier for propagators and the message tallies; `_lag` the lag
gauge's readers and members.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Optional

from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from ..error import ErrorInvalidArgument
from ..observer import ClientObserver
from ._conventions import GETTER
from ._instrumentation import Instrumentation

if TYPE_CHECKING:
    from ..client import LiftbridgeClient
    from ..types import Message

__all__ = ["ClientObserver", "Instrumentation", "instrument", "message_context", "uninstrument"]

_instrumented: weakref.WeakKeyDictionary[LiftbridgeClient, Instrumentation] = (
    weakref.WeakKeyDictionary()
)


def message_context(message: Message) -> otel_context.Context:
    """The producer's trace context carried in a received message's headers.

    Use it as the parent of the span that processes the message:
    `tracer.start_as_current_span("process", context=message_context(msg))`.
    Without a context in the headers the result is an empty context.
    """
    return propagate.extract(message.headers or {}, getter=GETTER)


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
