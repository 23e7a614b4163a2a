"""Protobuf wire-format primitives: varints, lengths, skipping unknown fields.

Shared by the table-driven codec (``_codec``) and the hand-written fast paths
(``messages``). They raise ``Malformed`` (or ``IndexError`` at the end of the
buffer); the message decoders turn both into a ``DecodeError`` that says where.
"""

from __future__ import annotations

import struct
from typing import Union

_MASK32 = 0xFFFFFFFF
_MASK64 = 0xFFFFFFFFFFFFFFFF
_SIGN32 = 0x80000000
_SIGN64 = 0x8000000000000000

# Wire types.
WT_VARINT = 0
WT_I64 = 1
WT_LEN = 2
WT_SGROUP = 3
WT_EGROUP = 4
WT_I32 = 5


class DecodeError(ValueError):
    """Input bytes are not a valid encoding of the message being decoded.

    The message names the message type and field (``Type.field``) and what was
    wrong with it; for nested messages the path from the outermost type.
    """


class Malformed(Exception):
    """Raised by the primitives; the message decoder adds where it happened."""


# Single-byte varints, shared instead of re-created (most tags and lengths).
_SMALL = [bytes((i,)) for i in range(128)]


# Continuation bits for the first n - 1 bytes of an n-byte varint.
_CONTINUATION = [int.from_bytes(b"\x80" * n, "little") for n in range(10)]
_MINUS_ONE = b"\xff" * 9 + b"\x01"


def encode_varint(value: int) -> bytes:
    """Encode an integer as a base-128 varint.

    Negative values are encoded as their 64-bit two's complement (10 bytes), as
    protobuf does for int32, int64 and enum fields. ``value`` must fit 64 bits.
    """
    if 0 <= value < 0x80:
        return _SMALL[value]
    if value < 0:
        if value == -1:  # expectedOffset's "next offset", on every publish
            return _MINUS_ONE
        value &= _MASK64
    if value < 0x4000:
        return bytes((value & 0x7F | 0x80, value >> 7))
    # Spread the 7-bit groups into bytes in three steps (28, 14, 7 bits) instead
    # of a loop per byte: faster for long varints (timeit).
    n = (value.bit_length() + 6) // 7
    x = (value & 0xFFFFFFF) | (value >> 28 & 0xFFFFFFF) << 32 | (value >> 56) << 64
    x = (x & 0x00003FFF00003FFF00003FFF) | (x & 0x0FFFC0000FFFC0000FFFC000) << 2
    x = (x & 0x007F007F007F007F007F007F) | (x & 0x3F803F803F803F803F803F80) << 1
    return (x | _CONTINUATION[n - 1]).to_bytes(n, "little")


def decode_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode an unsigned varint at ``pos``; return ``(value, new_pos)``.

    Values are truncated to 64 bits, as protobuf does. Raises ``IndexError`` if
    the buffer ends inside the varint and ``Malformed`` if it is longer than
    ten bytes.
    """
    # Unrolled, and built from 28-bit halves that stay single-digit CPython
    # ints until the end: faster than the obvious loop for long varints such
    # as nanosecond timestamps (timeit).
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    lo = b & 0x7F
    b = buf[pos + 1]
    if b < 0x80:
        return lo | b << 7, pos + 2
    lo |= (b & 0x7F) << 7
    b = buf[pos + 2]
    if b < 0x80:
        return lo | b << 14, pos + 3
    lo |= (b & 0x7F) << 14
    b = buf[pos + 3]
    if b < 0x80:
        return lo | b << 21, pos + 4
    lo |= (b & 0x7F) << 21
    b = buf[pos + 4]
    if b < 0x80:
        return lo | b << 28, pos + 5
    hi = b & 0x7F
    b = buf[pos + 5]
    if b < 0x80:
        return lo | (hi | b << 7) << 28, pos + 6
    hi |= (b & 0x7F) << 7
    b = buf[pos + 6]
    if b < 0x80:
        return lo | (hi | b << 14) << 28, pos + 7
    hi |= (b & 0x7F) << 14
    b = buf[pos + 7]
    if b < 0x80:
        return lo | (hi | b << 21) << 28, pos + 8
    hi |= (b & 0x7F) << 21
    b = buf[pos + 8]
    if b < 0x80:
        return lo | hi << 28 | b << 56, pos + 9
    top = b & 0x7F
    b = buf[pos + 9]
    if b < 0x80:
        return (lo | hi << 28 | (top | b << 7) << 56) & _MASK64, pos + 10
    raise Malformed("varint longer than 10 bytes")


_unpack_u64 = struct.Struct("<Q").unpack_from
_CONT8 = 0x8080808080808080


def decode_varint8(buf: bytes, pos: int) -> tuple[int, int]:
    """``decode_varint`` for wide varints, given 8 readable bytes at ``pos``.

    Reads 8 bytes at once and gathers their 7-bit groups in three steps: a
    9-byte varint (every nanosecond timestamp) is faster this way than
    unrolled, shorter varints are slower (timeit), so only
    the timestamp field of the subscribe hot path uses it.
    """
    x = _unpack_u64(buf, pos)[0]
    c = x & _CONT8
    if c == _CONT8:  # all eight bytes continue
        n = 0
    else:
        stop = (c ^ _CONT8) & -(c ^ _CONT8)  # top bit of the last byte
        x &= stop - 1
        n = stop.bit_length() >> 3
    x &= 0x7F7F7F7F7F7F7F7F
    x = (x & 0x007F007F007F007F) | (x >> 1 & 0x3F803F803F803F80)
    x = (x & 0x00003FFF00003FFF) | (x >> 2 & 0x0FFFC0000FFFC000)
    x = (x & 0x0FFFFFFF) | (x >> 4 & 0x00FFFFFFF0000000)
    if n:
        return x, pos + n
    b = buf[pos + 8]
    if b < 0x80:
        return x | b << 56, pos + 9
    x |= (b & 0x7F) << 56
    b = buf[pos + 9]
    if b < 0x80:
        return (x | b << 63) & _MASK64, pos + 10
    raise Malformed("varint longer than 10 bytes")


def to_int32(value: int) -> int:
    """Interpret the low 32 bits of a decoded varint as a signed int32."""
    value &= _MASK32
    return value - 0x100000000 if value & _SIGN32 else value


def to_int64(value: int) -> int:
    """Interpret a decoded (64-bit) varint as a signed int64."""
    return value - 0x10000000000000000 if value & _SIGN64 else value


def skip_field(buf: bytes, pos: int, end: int, wire_type: int) -> int:
    """Return the position after the value of an unknown field."""
    if wire_type == WT_VARINT:
        return decode_varint(buf, pos)[1]
    if wire_type == WT_LEN:
        n, pos = decode_varint(buf, pos)
        if n > end - pos:
            raise Malformed(f"length {n} runs past the end of the buffer")
        return pos + n
    if wire_type == WT_I64:
        pos += 8
    elif wire_type == WT_I32:
        pos += 4
    elif wire_type in (WT_SGROUP, WT_EGROUP):
        raise Malformed("groups (wire types 3 and 4) are not supported")
    else:
        raise Malformed(f"invalid wire type {wire_type}")
    if pos > end:
        raise Malformed("truncated fixed-width value")
    return pos


def read_length(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Read a length prefix and check the payload fits before ``end``."""
    n, pos = decode_varint(buf, pos)
    if n > end - pos:
        raise Malformed(f"length {n} runs past the end of the buffer")
    return n, pos


def decode_str(buf: bytes, start: int, stop: int) -> str:
    """Decode a UTF-8 string field, as protobuf does: invalid UTF-8 is an error."""
    try:
        return buf[start:stop].decode()
    except UnicodeDecodeError as exc:
        raise Malformed(f"invalid UTF-8 ({exc.reason} at byte {exc.start})") from None


def as_bytes(data: Union[bytes, bytearray, memoryview]) -> bytes:
    """Return ``data`` as ``bytes``, copying only if it is not already bytes."""
    if type(data) is bytes:
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"expected bytes, bytearray or memoryview, not {type(data).__name__}")
