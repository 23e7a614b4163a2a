"""Argument checks of the publishing calls, raising what gufo-liftbridge raises.

gufo-liftbridge 0.2.0 builds a protobuf `PublishRequest`, so a value, key or
header of the wrong type raises `TypeError`, `value=None` publishes an empty
message, and a negative partition comes back from the server as
`ErrorNotFound`. lbwire refuses the same arguments before sending anything,
with classes that are both gufo's and lbwire's earlier ones (see
`lbwire.error.ErrorInvalidType` and `ErrorInvalidPartition`).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from .error import ErrorInvalidPartition, ErrorInvalidType

__all__ = ["checked_publish_value"]

_BYTES_LIKE = (bytes, bytearray, memoryview)


def checked_publish_value(
    value: Any,
    *,
    key: Any,
    headers: Optional[Mapping[Any, Any]],
    partition: Optional[int],
) -> bytes:
    """Check a publish's arguments; return its value as bytes (None: empty).

    Raises:
        ErrorInvalidType: The value or key is not bytes-like, or a header name
            is not a `str` or its value not bytes-like.
        ErrorInvalidPartition: A negative partition.
    """
    if value is None:
        value = b""
    elif not isinstance(value, _BYTES_LIKE):
        raise ErrorInvalidType(f"Message value must be bytes, not {type(value).__name__}")
    if key is not None and not isinstance(key, _BYTES_LIKE):
        raise ErrorInvalidType(f"Message key must be bytes, not {type(key).__name__}")
    if headers:
        for name, header_value in headers.items():
            if not isinstance(name, str) or not isinstance(header_value, _BYTES_LIKE):
                raise ErrorInvalidType(
                    f"Header {name!r}: names must be str and values bytes, "
                    f"not {type(name).__name__} and {type(header_value).__name__}"
                )
    if partition is not None and partition < 0:
        raise ErrorInvalidPartition(f"Partition must not be negative, not {partition}")
    return bytes(value)
