"""The semantic conventions' attributes, trace context in headers, and tallied counts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Callable, Dict, List, Optional, Tuple

from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.util.types import AttributeValue

SYSTEM = "liftbridge"
SCHEMA_URL = "https://opentelemetry.io/schemas/1.27.0"
Attributes = Dict[str, AttributeValue]


class BytesSetter(Setter[Dict[str, bytes]]):
    """Writes a propagator's fields into message headers, whose values are bytes."""

    def set(self, carrier: Dict[str, bytes], key: str, value: str) -> None:
        carrier[key] = value.encode()


class BytesGetter(Getter[Dict[str, bytes]]):
    """Reads a propagator's fields from message headers (undecodable bytes are replaced)."""

    def get(self, carrier: Dict[str, bytes], key: str) -> Optional[List[str]]:
        value = carrier.get(key)
        if value is None:
            return None
        return [value.decode("utf-8", "replace")]

    def keys(self, carrier: Dict[str, bytes]) -> List[str]:
        return list(carrier)


SETTER = BytesSetter()
GETTER = BytesGetter()

#: Span attributes that are also metric attributes (low cardinality).
METRIC_KEYS = (
    "messaging.system",
    "messaging.operation.name",
    "messaging.operation.type",
    "messaging.destination.name",
    "messaging.destination.partition.id",
    "messaging.consumer.group.name",
)


#: Bucket bounds (s) the semantic conventions give for messaging durations.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)


def seconds_histogram(meter: Meter, name: str, description: str) -> Histogram:
    try:
        return meter.create_histogram(
            name, "s", description, explicit_bucket_boundaries_advisory=DURATION_BUCKETS
        )
    except TypeError:
        # The advice appeared in opentelemetry-api 1.23; older SDKs use their
        # default buckets (meant for milliseconds) unless a View sets them.
        return meter.create_histogram(name, "s", description)


#: A tally's attributes, hashable: sorted (key, value) pairs.
TallyKey = Tuple[Tuple[str, AttributeValue], ...]


def tally_of(tallies: Dict[TallyKey, List[int]], attributes: Attributes) -> List[int]:
    """The [messages, bytes] tally of an attribute set, created at zero."""
    key = tuple(sorted(attributes.items()))
    tally = tallies.get(key)
    if tally is None:
        tally = tallies[key] = [0, 0]
    return tally


def count_message(tallies: Dict[TallyKey, List[int]], attributes: Attributes, size: int) -> None:
    tally = tally_of(tallies, attributes)
    tally[0] += 1
    tally[1] += size


def observe_tallies(
    tallies: Dict[TallyKey, List[int]], index: int
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    """An observable counter's callback: the tallies' totals (0: messages, 1: bytes)."""

    def observe(options: CallbackOptions) -> Iterable[Observation]:
        # A reader may collect from its own thread: list() copies the items
        # in one step, so a tally created meanwhile cannot break the loop.
        return [Observation(tally[index], dict(key)) for key, tally in list(tallies.items())]

    return observe


def metric_attributes_of(attributes: Attributes) -> Attributes:
    return {key: attributes[key] for key in METRIC_KEYS if key in attributes}


def name_span(operation: str, destination: Any) -> str:
    """`operation destination`, the conventions' span name, or the operation alone."""
    if isinstance(destination, str) and destination:
        return f"{operation} {destination}"
    return operation


def base_attributes(operation: str, operation_type: Optional[str]) -> Attributes:
    attributes: Attributes = {
        "messaging.system": SYSTEM,
        "messaging.operation.name": operation,
    }
    if operation_type is not None:
        attributes["messaging.operation.type"] = operation_type
    return attributes


def attributes_for_message(
    operation: str, operation_type: str, destination: Any, partition: Any, value: Any
) -> Attributes:
    attributes = base_attributes(operation, operation_type)
    if isinstance(destination, str) and destination:
        attributes["messaging.destination.name"] = destination
    if isinstance(partition, int):
        attributes["messaging.destination.partition.id"] = str(partition)
    if isinstance(value, (bytes, bytearray, memoryview)):
        attributes["messaging.message.body.size"] = size(value)
    return attributes


def size(value: Any) -> int:
    """The bytes of a value; 0 for one a serializer turns into bytes out of sight."""
    if isinstance(value, memoryview):
        return value.nbytes
    return len(value) if isinstance(value, (bytes, bytearray)) else 0


def with_context(headers: Any, context: Optional[otel_context.Context] = None) -> Any:
    """A copy of `headers` with the trace context added (the caller's dict stays as it was).

    Anything but a dict or None is returned as it is, for the client to refuse.
    """
    if headers is None:
        carrier: Dict[str, bytes] = {}
    elif isinstance(headers, dict):
        carrier = dict(headers)
    else:
        return headers
    propagate.inject(carrier, context, setter=SETTER)
    return carrier


def error_type(error: BaseException) -> str:
    # The conventions ask for the exception's fully qualified name.
    kind = type(error)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def record_error(span: Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, str(error)))
    span.set_attribute("error.type", error_type(error))
