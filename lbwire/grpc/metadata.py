"""gRPC's header encodings (grpc doc/PROTOCOL-HTTP2.md): timeouts, status messages, metadata."""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Iterable, List, Optional, Tuple, Union
from urllib.parse import quote, unquote_to_bytes

from .status import Metadata, MetadataValue, Status, status_from_http_status

__all__ = [
    "MetadataLike",
    "decode_bin_value",
    "decode_grpc_message",
    "decode_metadata",
    "encode_grpc_message",
    "encode_grpc_timeout",
    "encode_metadata",
    "is_informational",
    "not_grpc",
]

MetadataLike = Iterable[Tuple[str, MetadataValue]]

_TIMEOUT_UNITS = (
    ("n", 1e9),
    ("u", 1e6),
    ("m", 1e3),
    ("S", 1.0),
    ("M", 1 / 60),
    ("H", 1 / 3600),
)
_TIMEOUT_MAX = 99_999_999  # TimeoutValue is at most 8 digits


def encode_grpc_timeout(seconds: float) -> str:
    """Format a timeout as a ``grpc-timeout`` value: at most 8 digits and a unit.

    The finest unit that fits is chosen; the value is rounded up so the server
    never sees a shorter deadline than the client's. Non-positive timeouts
    become ``1n``.
    """
    if seconds <= 0:
        return "1n"
    for unit, per_second in _TIMEOUT_UNITS:
        value = math.ceil(seconds * per_second)
        if value <= _TIMEOUT_MAX:
            return f"{value}{unit}"
    return f"{_TIMEOUT_MAX}H"


# Characters grpc-message sends as-is: printable ASCII except '%'.
_MESSAGE_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if c != 0x25)


def encode_grpc_message(message: str) -> str:
    """Percent-encode a status message as ``grpc-message`` is sent."""
    return quote(message, safe=_MESSAGE_SAFE, encoding="utf-8")


def decode_grpc_message(value: Union[str, bytes]) -> str:
    """Decode a ``grpc-message`` value; never fails.

    Percent-escapes are decoded as UTF-8; malformed escapes are kept literally
    and invalid UTF-8 is replaced with U+FFFD, as the spec asks.
    """
    if not value:
        return ""
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    if b"%" not in value:
        return value.decode("utf-8", "replace")
    return unquote_to_bytes(value).decode("utf-8", "replace")


def decode_bin_value(value: bytes) -> bytes:
    """Decode a received ``-bin`` header value.

    Accepts base64 with or without padding, and values joined with commas
    (several headers of one name folded into one). Undecodable input is
    returned unchanged rather than failing the call.
    """
    try:
        if b"," in value:
            return b"".join(_b64decode(part) for part in value.split(b","))
        return _b64decode(value)
    except (binascii.Error, ValueError):
        return value


def _b64decode(part: bytes) -> bytes:
    part = part.strip().rstrip(b"=")
    # Both alphabets appear in the wild; map URL-safe to standard.
    return base64.b64decode(
        part.replace(b"-", b"+").replace(b"_", b"/") + b"=" * (-len(part) % 4),
        validate=True,
    )


_KEY_RE = re.compile(r"[0-9a-z_.\-]+\Z")
_ASCII_VALUE_RE = re.compile(r"[\x20-\x7e]*\Z")
# Headers the gRPC layer sets itself; users may not send them as metadata.
_RESERVED_KEYS = frozenset(
    {"content-type", "te", "user-agent", "host", "connection", "grpc-timeout"}
)


def encode_metadata(metadata: MetadataLike) -> List[Tuple[bytes, bytes]]:
    """Validate custom metadata and encode it as HTTP/2 header pairs.

    Keys are lower-cased ASCII (``0-9 a-z _ . -``), not reserved (``grpc-*``,
    pseudo-headers, HTTP/2 connection headers). Values of keys ending in
    ``-bin`` are bytes, sent base64-encoded without padding; other values are
    printable-ASCII strings.

    Raises:
        ValueError: a key or value is not allowed.
        TypeError: a value has the wrong type for its key.

    """
    headers = []
    for key, value in metadata:
        key = key.lower()
        if not _KEY_RE.match(key) or key.startswith("grpc-") or key in _RESERVED_KEYS:
            raise ValueError(f"metadata key not allowed: {key!r}")
        if key.endswith("-bin"):
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise TypeError(f"value of binary metadata {key!r} must be bytes")
            encoded = base64.b64encode(value).rstrip(b"=")
        else:
            if not isinstance(value, str):
                raise TypeError(f"value of metadata {key!r} must be str")
            if not _ASCII_VALUE_RE.match(value):
                raise ValueError(f"metadata value of {key!r} is not printable ASCII")
            encoded = value.encode("ascii")
        headers.append((key.encode("ascii"), encoded))
    return headers


# Headers that are part of the protocol, not of the application's metadata.
# (grpc-status-details-bin stays: it is the application's rich error detail.)
_PROTOCOL_HEADERS = frozenset(
    {
        b"content-type",
        b"grpc-status",
        b"grpc-message",
        b"grpc-encoding",
        b"grpc-accept-encoding",
    }
)


def decode_metadata(headers: Iterable[Tuple[bytes, bytes]]) -> Metadata:
    """Turn received header pairs into metadata: ``-bin`` values decoded to bytes.

    Pseudo-headers and the gRPC protocol headers (``grpc-status``,
    ``grpc-message``, ``content-type``, ...) are left out.
    """
    result: List[Tuple[str, MetadataValue]] = []
    for name, value in headers:
        if name[:1] == b":" or name in _PROTOCOL_HEADERS:
            continue
        key = name.decode("ascii", "replace")
        if key.endswith("-bin"):
            result.append((key, decode_bin_value(value)))
        else:
            result.append((key, value.decode("latin-1")))
    return tuple(result)


def is_informational(header: Tuple[bytes, bytes]) -> bool:
    """Whether a response's first header says it is informational (1xx)."""
    return header[0] == b":status" and header[1][:1] == b"1"


def not_grpc(headers: List[Tuple[bytes, bytes]]) -> Optional[Tuple[Status, str]]:
    """Return the failure if response headers are not a gRPC response's, else None."""
    http_status = b""
    content_type = b""
    for name, value in headers:
        if name == b":status":
            http_status = value
        elif name == b"content-type":
            content_type = value
    if http_status != b"200":
        if not (len(http_status) == 3 and http_status.isdigit()):
            return Status.INTERNAL, f"malformed :status header {http_status[:20]!r}"
        code = int(http_status)
        return status_from_http_status(code), f"HTTP status {code}"
    if not content_type.startswith(b"application/grpc"):
        text = content_type[:100].decode("latin-1")
        return Status.UNKNOWN, f"unexpected content-type {text!r}"
    return None
