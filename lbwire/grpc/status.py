"""gRPC status codes, the error every failed call raises, and the status mappings.

The mappings from HTTP status codes and HTTP/2 RST_STREAM error codes follow
grpc's doc/http-grpc-status-mapping.md and doc/PROTOCOL-HTTP2.md.
"""

from __future__ import annotations

import enum
from typing import Tuple, Union

__all__ = [
    "GRPCError",
    "Metadata",
    "MetadataValue",
    "Status",
    "status_from_h2_error_code",
    "status_from_http_status",
]

#: A metadata value: ``str`` for ASCII keys, ``bytes`` for keys ending in ``-bin``.
MetadataValue = Union[str, bytes]
#: Metadata as received: ordered ``(key, value)`` pairs, keys in lower case.
Metadata = Tuple[Tuple[str, MetadataValue], ...]


class Status(enum.IntEnum):
    """The 17 gRPC status codes (grpc doc/statuscodes.md)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class GRPCError(Exception):
    """A call ended with a status other than OK.

    Attributes:
        status: the gRPC status code.
        message: the human-readable status message (``grpc-message``, decoded),
            possibly empty.
        trailers: the trailing metadata the server sent with the status, if any.
        not_processed: True when the transport knows the server never began
            processing the call (its stream lay beyond a GOAWAY's last stream id,
            or the server refused it with RST_STREAM REFUSED_STREAM), so sending
            it again cannot duplicate its effect.

    """

    status: Status
    message: str
    trailers: Metadata
    not_processed: bool

    def __init__(
        self,
        status: Status,
        message: str = "",
        trailers: Metadata = (),
        not_processed: bool = False,
    ) -> None:
        super().__init__(status, message, trailers, not_processed)
        self.status = status
        self.message = message
        self.trailers = trailers
        self.not_processed = not_processed

    def __str__(self) -> str:
        if self.message:
            return f"{self.status.name}: {self.message}"
        return self.status.name

    def __repr__(self) -> str:
        return f"GRPCError({self.status.name}, {self.message!r})"


def status_from_int(code: int) -> Status:
    """Return the :class:`Status` for a received code; out-of-range codes are UNKNOWN."""
    try:
        return Status(code)
    except ValueError:
        return Status.UNKNOWN


_HTTP_STATUS = {
    400: Status.INTERNAL,
    401: Status.UNAUTHENTICATED,
    403: Status.PERMISSION_DENIED,
    404: Status.UNIMPLEMENTED,
    429: Status.UNAVAILABLE,
    502: Status.UNAVAILABLE,
    503: Status.UNAVAILABLE,
    504: Status.UNAVAILABLE,
}


def status_from_http_status(http_status: int) -> Status:
    """Map a non-200 HTTP status of a response to a gRPC status."""
    return _HTTP_STATUS.get(http_status, Status.UNKNOWN)


# RST_STREAM / GOAWAY error codes (RFC 9113 section 7) to gRPC status.
_H2_ERROR = {
    0x0: Status.INTERNAL,  # NO_ERROR: a reset without trailers is still an error
    0x1: Status.INTERNAL,  # PROTOCOL_ERROR
    0x2: Status.INTERNAL,  # INTERNAL_ERROR
    0x3: Status.INTERNAL,  # FLOW_CONTROL_ERROR
    0x4: Status.INTERNAL,  # SETTINGS_TIMEOUT
    0x5: Status.INTERNAL,  # STREAM_CLOSED
    0x6: Status.INTERNAL,  # FRAME_SIZE_ERROR
    0x7: Status.UNAVAILABLE,  # REFUSED_STREAM: not processed, safe to retry
    0x8: Status.CANCELLED,  # CANCEL
    0x9: Status.INTERNAL,  # COMPRESSION_ERROR
    0xA: Status.INTERNAL,  # CONNECT_ERROR
    0xB: Status.RESOURCE_EXHAUSTED,  # ENHANCE_YOUR_CALM
    0xC: Status.PERMISSION_DENIED,  # INADEQUATE_SECURITY
    0xD: Status.INTERNAL,  # HTTP_1_1_REQUIRED
}


def status_from_h2_error_code(error_code: int) -> Status:
    """Map an HTTP/2 RST_STREAM error code to a gRPC status."""
    return _H2_ERROR.get(int(error_code), Status.INTERNAL)
