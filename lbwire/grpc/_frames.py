"""HTTP/2 frames as bytes (RFC 9113 4 and 6): the constants and builders the core uses."""

from __future__ import annotations

from typing import Dict

from h2.errors import ErrorCodes

__all__ = [
    "CLIENT_PREFACE",
    "HTTP2ConnectionError",
    "goaway",
    "parse_settings",
    "rst_stream",
    "settings",
    "window_update",
]

# Frame types.
DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

# Flags.
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# SETTINGS parameters.
HEADER_TABLE_SIZE = 0x1
ENABLE_PUSH = 0x2
MAX_CONCURRENT_STREAMS = 0x3
INITIAL_WINDOW_SIZE = 0x4
MAX_FRAME_SIZE = 0x5
MAX_HEADER_LIST_SIZE = 0x6

DEFAULT_WINDOW = 65_535
DEFAULT_FRAME_SIZE = 16_384
MAX_WINDOW = 2**31 - 1
MAX_STREAM_ID = 2**31 - 1
_LARGEST_FRAME_SIZE = 2**24 - 1

CLIENT_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"
PING_HEADER = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00"
PING_ACK_HEADER = b"\x00\x00\x08\x06\x01\x00\x00\x00\x00"


class HTTP2ConnectionError(Exception):
    """The peer broke HTTP/2 in a way that ends the connection (RFC 9113 5.4.1).

    ``preface``: the peer is no HTTP/2 server at all (the message says so).
    """

    def __init__(self, error_code: ErrorCodes, message: str, *, preface: bool = False) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.preface = preface


def frame_header(length: int, frame_type: int, flags: int, stream_id: int) -> bytes:
    """The 9-byte header of a frame."""
    return length.to_bytes(3, "big") + bytes((frame_type, flags)) + stream_id.to_bytes(4, "big")


def rst_stream(stream_id: int, error_code: int) -> bytes:
    """A RST_STREAM frame."""
    return b"\x00\x00\x04\x03\x00" + stream_id.to_bytes(4, "big") + error_code.to_bytes(4, "big")


def window_update(stream_id: int, increment: int) -> bytes:
    """A WINDOW_UPDATE frame."""
    return b"\x00\x00\x04\x08\x00" + stream_id.to_bytes(4, "big") + increment.to_bytes(4, "big")


def settings(values: Dict[int, int]) -> bytes:
    """A SETTINGS frame carrying ``values``."""
    payload = b"".join(
        code.to_bytes(2, "big") + value.to_bytes(4, "big") for code, value in values.items()
    )
    return frame_header(len(payload), SETTINGS, 0, 0) + payload


def goaway(last_stream_id: int, error_code: int, debug_data: bytes = b"") -> bytes:
    """A GOAWAY frame."""
    payload = last_stream_id.to_bytes(4, "big") + error_code.to_bytes(4, "big") + debug_data
    return frame_header(len(payload), GOAWAY, 0, 0) + payload


def parse_settings(payload: bytes) -> Dict[int, int]:
    """The parameters of a received SETTINGS frame (not an ACK), validated.

    Unknown parameters are kept (the caller ignores them, RFC 9113 6.5.2).

    Raises:
        HTTP2ConnectionError: the frame or a value is invalid.

    """
    if len(payload) % 6:
        raise HTTP2ConnectionError(
            ErrorCodes.FRAME_SIZE_ERROR, "SETTINGS length not a multiple of 6"
        )
    values: Dict[int, int] = {}
    for position in range(0, len(payload), 6):
        code = int.from_bytes(payload[position : position + 2], "big")
        value = int.from_bytes(payload[position + 2 : position + 6], "big")
        if code == ENABLE_PUSH and value > 1:
            raise HTTP2ConnectionError(ErrorCodes.PROTOCOL_ERROR, "invalid SETTINGS_ENABLE_PUSH")
        if code == INITIAL_WINDOW_SIZE and value > MAX_WINDOW:
            raise HTTP2ConnectionError(
                ErrorCodes.FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE above 2**31-1"
            )
        if code == MAX_FRAME_SIZE and not DEFAULT_FRAME_SIZE <= value <= _LARGEST_FRAME_SIZE:
            raise HTTP2ConnectionError(
                ErrorCodes.PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of range"
            )
        values[code] = value
    return values
