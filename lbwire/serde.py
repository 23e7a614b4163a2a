"""Serializers and deserializers: typed keys and values instead of bytes.

A serializer turns a value into the bytes a publish sends; a deserializer
turns the bytes a subscription receives into a value. Any callable of the
right shape is one (the two protocols below only name the shapes), so
msgpack, protobuf and pydantic plug in with a function or a lambda (see
docs/cookbook/serializers.md). Built in: bytes (the default: values are
sent and received as they are), str (UTF-8) and JSON (the standard
library's `json`).

Set them on the client for every call (`LiftbridgeClient(...,
value_serializer=..., value_deserializer=...)`, and the same for keys), or
per call: `publish(..., value_serializer=...)`, `subscribe(...,
value_deserializer=...)`, `client.reader(...)` and `client.consumer(...)`.
A per-call one replaces the client's; `serde.BYTES` turns the client's off
for one call. A value that its deserializer refuses raises
`ErrorUndecodableMessage` carrying the raw message, or with
`on_undecodable="raw"` is delivered as received, flagged.

Type checkers see the value type a per-call deserializer gives:
`subscribe(..., value_deserializer=deserialize_str)` yields `Message[str]`.
A client-wide deserializer is invisible to them (the client's type does not
carry it): its messages are typed `Message` (bytes) unless annotated.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, TypeVar

from .compression import undecodable
from .error import ErrorInvalidArgument

if TYPE_CHECKING:
    from .types import Message

__all__ = [
    "BYTES",
    "Deserializer",
    "Serializer",
    "deserialize_json",
    "deserialize_str",
    "serialize_json",
    "serialize_str",
]

_T_contra = TypeVar("_T_contra", contravariant=True)
_F = TypeVar("_F", bound=Callable[..., Any])
_T_co = TypeVar("_T_co", covariant=True)


class Serializer(Protocol[_T_contra]):
    """Turns a value into the bytes published: any `(value) -> bytes` callable."""

    def __call__(self, value: _T_contra, /) -> bytes:
        """The bytes to publish for `value`."""


class Deserializer(Protocol[_T_co]):
    """Turns received bytes into a value: any `(data: bytes) -> T` callable.

    It raises (any `Exception`) for bytes it cannot turn into a value; the
    subscription then raises `ErrorUndecodableMessage` or delivers the
    message raw, as its `on_undecodable` says.
    """

    def __call__(self, data: bytes, /) -> _T_co:
        """The value `data` holds."""


def _identity(data: bytes, /) -> bytes:
    return data


#: The default, as a value: bytes unchanged, both ways. Passed per call, it
#: turns off a serializer or deserializer set on the client.
BYTES: Callable[[bytes], bytes] = _identity


def serialize_str(value: str, /) -> bytes:
    """`value` encoded as UTF-8."""
    return value.encode()


def deserialize_str(data: bytes, /) -> str:
    """`data` decoded from UTF-8 (invalid UTF-8 raises `UnicodeDecodeError`)."""
    return data.decode()


def serialize_json(value: Any, /) -> bytes:
    """`value` as compact JSON in UTF-8 (`json.dumps`; NaN and infinities refused)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def deserialize_json(data: bytes, /) -> Any:
    """The JSON document `data` (UTF-8, UTF-16 or UTF-32, as `json.loads` reads it)."""
    return json.loads(data)


def resolve(name: str, per_call: Optional[_F], default: Optional[_F]) -> Optional[_F]:
    """The one that applies to a call: the call's, else the client's; None for bytes as they are.

    Raises:
        ValueError: The call's `name` argument is not callable (`ErrorInvalidArgument`).
    """
    check_callable(name, per_call)
    chosen = per_call if per_call is not None else default
    return None if chosen is _identity else chosen


def check_callable(name: str, value: object) -> None:
    """Raise `ErrorInvalidArgument` unless `value` is None or callable."""
    if value is not None and not callable(value):
        raise ErrorInvalidArgument(f"{name} must be callable, not {type(value).__name__}")


def deserialize_message(
    message: Message,
    value_deserializer: Optional[Callable[[bytes], Any]],
    key_deserializer: Optional[Callable[[bytes], Any]],
    on_undecodable: str,
) -> Message[Any, Any]:
    """`message` with its value and key deserialized.

    A deserializer that raises makes this raise `ErrorUndecodableMessage`
    carrying the message as received, or with `on_undecodable="raw"` return
    that message with `decode_error` set. A message already delivered raw
    (its value could not be decompressed) is returned as it is.
    """
    if message.decode_error is not None:
        return message
    value: Any = message.value
    key: Any = message.key
    what = "value"
    try:
        if value_deserializer is not None:
            value = value_deserializer(value)
        what = "key"
        if key_deserializer is not None:
            key = key_deserializer(key)
    except Exception as exc:  # what a user's deserializer raises is its own choice
        reason = f"cannot be deserialized: its {what} raised {type(exc).__name__}: {exc}"
        if on_undecodable == "raw":
            message.decode_error = reason
            return message
        raise undecodable(message, reason) from exc
    # The same object (the raw message is not kept): nothing else refers to it.
    message.value = value
    message.key = key
    return message
