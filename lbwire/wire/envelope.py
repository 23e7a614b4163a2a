"""Liftbridge's NATS envelope: how messages and acks travel over plain NATS.

A program may publish to a stream's NATS subject directly instead of calling the
gRPC ``Publish``; Liftbridge then expects the message wrapped in an envelope, and
sends acks to the ``ackInbox`` subject wrapped the same way. Layout (big-endian,
as in the Liftbridge server's ``server/protocol/envelope.go``)::

    0..3   magic number B9 0E 43 B4 (deliberately invalid UTF-8)
    4      protocol version, 0x00
    5      header length: 8, or 12 with a CRC
    6      flags: bit 0 set = a CRC-32C of the payload follows the header
    7      payload type: 0x00 publish (a ``Message``), 0x01 ack (an ``Ack``)
    8..11  CRC-32C (Castagnoli) of the payload, only when flag bit 0 is set
    then   the protobuf-encoded payload
"""

from __future__ import annotations

from enum import IntEnum
from typing import Union

from ._generated import Ack, Message
from ._primitives import DecodeError, as_bytes
from .messages import decode_message_range

__all__ = [
    "ENVELOPE_MAGIC",
    "ENVELOPE_VERSION",
    "EnvelopeType",
    "crc32c",
    "decode_ack_envelope",
    "decode_message_envelope",
    "encode_ack_envelope",
    "encode_message_envelope",
]

ENVELOPE_MAGIC = b"\xb9\x0e\x43\xb4"
ENVELOPE_VERSION = 0
_HEADER_LEN = 8
_FLAG_CRC = 0x01


class EnvelopeType(IntEnum):
    """Payload type byte of an envelope (the client-facing ones)."""

    PUBLISH = 0
    ACK = 1


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: Union[bytes, bytearray, memoryview]) -> int:
    """Return the CRC-32C (Castagnoli) checksum of ``data``.

    Pure Python, one table lookup per byte (about 10 MB/s on CPython): fine for
    the optional envelope checksum, not for bulk data.
    """
    table = _CRC32C_TABLE
    crc = 0xFFFFFFFF
    for b in bytes(data):
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _envelope(payload: bytes, kind: EnvelopeType, with_crc: bool) -> bytes:
    if with_crc:
        header = ENVELOPE_MAGIC + bytes((ENVELOPE_VERSION, 12, _FLAG_CRC, kind))
        return header + crc32c(payload).to_bytes(4, "big") + payload
    return ENVELOPE_MAGIC + bytes((ENVELOPE_VERSION, _HEADER_LEN, 0, kind)) + payload


def _payload_start(buf: bytes, expected: EnvelopeType) -> int:
    """Check the envelope header and return where the payload starts."""
    if len(buf) < _HEADER_LEN:
        raise DecodeError(f"envelope: {len(buf)} bytes, shorter than the header")
    if buf[:4] != ENVELOPE_MAGIC:
        raise DecodeError(f"envelope: bad magic number {buf[:4].hex()}")
    if buf[4] != ENVELOPE_VERSION:
        raise DecodeError(f"envelope: unknown protocol version {buf[4]}")
    header_len, flags, kind = buf[5], buf[6], buf[7]
    if kind != expected:
        raise DecodeError(f"envelope: payload type {kind}, expected {expected:d}")
    if not _HEADER_LEN <= header_len <= len(buf):
        raise DecodeError(f"envelope: bad header length {header_len}")
    if flags & _FLAG_CRC:
        if header_len != _HEADER_LEN + 4:
            raise DecodeError(f"envelope: CRC flag set but header length is {header_len}, not 12")
        expected_crc = int.from_bytes(buf[8:12], "big")
        actual_crc = crc32c(memoryview(buf)[12:])
        if actual_crc != expected_crc:
            raise DecodeError(
                f"envelope: CRC-32C mismatch: header says {expected_crc:#010x}, "
                f"payload has {actual_crc:#010x}"
            )
    return header_len


def encode_message_envelope(msg: Message, *, with_crc: bool = False) -> bytes:
    """Wrap ``msg`` in a publish envelope, ready to publish on a NATS subject.

    ``with_crc`` adds the CRC-32C of the payload (the server checks it).
    """
    return _envelope(msg.encode(), EnvelopeType.PUBLISH, with_crc)


def decode_message_envelope(data: Union[bytes, bytearray, memoryview]) -> Message:
    """Unwrap a publish envelope.

    Raises ``DecodeError`` if ``data`` is not a valid publish envelope (bad
    magic, version, type, header length or CRC) or its payload is malformed.
    """
    buf = as_bytes(data)
    return decode_message_range(buf, _payload_start(buf, EnvelopeType.PUBLISH))


def encode_ack_envelope(ack: Ack, *, with_crc: bool = False) -> bytes:
    """Wrap ``ack`` in an ack envelope, as the server publishes it to ``ackInbox``."""
    return _envelope(ack.encode(), EnvelopeType.ACK, with_crc)


def decode_ack_envelope(data: Union[bytes, bytearray, memoryview]) -> Ack:
    """Unwrap an ack envelope received on an ``ackInbox`` subject.

    Raises ``DecodeError`` if ``data`` is not a valid ack envelope or its payload
    is malformed.
    """
    buf = as_bytes(data)
    start = _payload_start(buf, EnvelopeType.ACK)
    ack = Ack()
    ack.merge_range(buf, start, len(buf))
    return ack
