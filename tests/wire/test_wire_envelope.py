"""Liftbridge's NATS envelope: exact layout, round trips, and refusals."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire_reference import message_strategy

from lbwire.wire import Ack, AckPolicy, DecodeError, Message
from lbwire.wire.envelope import (
    ENVELOPE_MAGIC,
    crc32c,
    decode_ack_envelope,
    decode_message_envelope,
    encode_ack_envelope,
    encode_message_envelope,
)


def test_magic_number_is_the_servers() -> None:
    assert bytes([0xB9, 0x0E, 0x43, 0xB4]) == ENVELOPE_MAGIC


def test_publish_envelope_layout() -> None:
    msg = Message(value=b"hi", offset=-1)
    assert encode_message_envelope(msg) == (
        b"\xb9\x0e\x43\xb4"  # magic
        b"\x00"  # version
        b"\x08"  # header length
        b"\x00"  # flags
        b"\x00" + msg.encode()  # type: publish
    )


def test_ack_envelope_layout() -> None:
    ack = Ack(stream="s", offset=3)
    assert encode_ack_envelope(ack) == b"\xb9\x0e\x43\xb4\x00\x08\x00\x01" + ack.encode()


def test_envelope_with_crc_layout() -> None:
    msg = Message(value=b"hi")
    payload = msg.encode()
    assert encode_message_envelope(msg, with_crc=True) == (
        b"\xb9\x0e\x43\xb4\x00\x0c\x01\x00" + crc32c(payload).to_bytes(4, "big") + payload
    )


def test_crc32c_check_value() -> None:
    # The CRC-32C catalogue's check value, and the empty input.
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0


def test_message_as_a_go_client_publishes_it() -> None:
    # Bytes built by hand the way go-liftbridge's NewMessage lays them out:
    # header, then key=2, value=3, headers=9, ackInbox=10, correlationId=11,
    # offset=1 set to -1 (its "next offset" default).
    payload = (
        b"\x08"
        + b"\xff" * 9
        + b"\x01"
        + b"\x12\x01k"
        + b"\x1a\x05hello"
        + b"\x4a\x07\x0a\x01h\x12\x02hv"
        + b"\x52\x03box"
        + b"\x5a\x02id"
        + b"\x60\x01"
    )
    msg = decode_message_envelope(b"\xb9\x0e\x43\xb4\x00\x08\x00\x00" + payload)
    assert msg == Message(
        offset=-1,
        key=b"k",
        value=b"hello",
        headers={"h": b"hv"},
        ackInbox="box",
        correlationId="id",
        ackPolicy=AckPolicy.ALL,
    )


@settings(max_examples=50, deadline=None)
@given(msg=message_strategy(Message), with_crc=st.booleans())
def test_message_envelope_round_trip(msg: Message, with_crc: bool) -> None:
    data = encode_message_envelope(msg, with_crc=with_crc)
    assert decode_message_envelope(data) == msg
    assert decode_message_envelope(memoryview(data)) == msg


@settings(max_examples=50, deadline=None)
@given(ack=message_strategy(Ack), with_crc=st.booleans())
def test_ack_envelope_round_trip(ack: Ack, with_crc: bool) -> None:
    assert decode_ack_envelope(encode_ack_envelope(ack, with_crc=with_crc)) == ack


def test_longer_header_without_crc_is_skipped() -> None:
    # The server reads the payload from the header length on, whatever it is.
    ack = Ack(stream="s")
    data = b"\xb9\x0e\x43\xb4\x00\x0a\x00\x01" + b"\x00\x00" + ack.encode()
    assert decode_ack_envelope(data) == ack


def _publish(header: bytes, payload: bytes = b"\x1a\x01v") -> bytes:
    return header + payload


@pytest.mark.parametrize(
    ("data", "match"),
    [
        pytest.param(b"\xb9\x0e\x43", "shorter than the header", id="short"),
        pytest.param(b"foobarbaz", "bad magic number", id="magic"),
        pytest.param(
            _publish(b"\xb9\x0e\x43\xb4\x01\x08\x00\x00"),
            "unknown protocol version 1",
            id="version",
        ),
        pytest.param(
            _publish(b"\xb9\x0e\x43\xb4\x00\x08\x00\x01"),
            "payload type 1, expected 0",
            id="ack-not-publish",
        ),
        pytest.param(
            _publish(b"\xb9\x0e\x43\xb4\x00\x04\x00\x00"),
            "bad header length 4",
            id="header-too-short",
        ),
        pytest.param(
            b"\xb9\x0e\x43\xb4\x00\x20\x00\x00",
            "bad header length 32",
            id="header-past-end",
        ),
        pytest.param(
            _publish(b"\xb9\x0e\x43\xb4\x00\x08\x01\x00"),
            "CRC flag set but header length is 8",
            id="crc-missing",
        ),
        pytest.param(
            _publish(b"\xb9\x0e\x43\xb4\x00\x0c\x01\x00\x00\x00\x00\x20"),
            "CRC-32C mismatch",
            id="crc-mismatch",
        ),
        pytest.param(
            _publish(b"\xb9\x0e\x43\xb4\x00\x08\x00\x00", b"\x1a\x05v"),
            r"Message\.value",
            id="bad-payload",
        ),
    ],
)
def test_bad_publish_envelopes_raise_decode_error(data: bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        decode_message_envelope(data)


def test_publish_envelope_is_not_an_ack() -> None:
    with pytest.raises(DecodeError, match="payload type 0, expected 1"):
        decode_ack_envelope(encode_message_envelope(Message()))


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=40), prefix=st.sampled_from([b"", b"\xb9\x0e\x43\xb4\x00"]))
def test_arbitrary_envelopes_only_ever_raise_decode_error(data: bytes, prefix: bytes) -> None:
    for decode in (decode_message_envelope, decode_ack_envelope):
        with contextlib.suppress(DecodeError):
            decode(prefix + data)
