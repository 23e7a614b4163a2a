"""Decoding edge cases: unknown fields, repeated encodings, malformed input."""

from __future__ import annotations

import contextlib

import pytest
from helpers.examples import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire_reference import MESSAGE_CLASSES, from_pb, message_strategy, pb_class

from lbwire.wire import (
    MAX_DEPTH,
    Ack,
    AckPolicy,
    CreateStreamRequest,
    DecodeError,
    FetchMetadataResponse,
    Message,
    PauseStreamRequest,
    PublishRequest,
    PublishResponse,
    StreamMetadata,
    WireMessage,
    decode_message_range,
)
from lbwire.wire import _codec as c
from lbwire.wire.messages import (
    StreamedTails,
    decode_streamed,
)

FUZZ = settings(
    max_examples=examples(300),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# -- what valid input decodes to ----------------------------------------------


def test_empty_input_is_the_default_message() -> None:
    assert Message.decode(b"") == Message()
    assert CreateStreamRequest.decode(b"").retentionMaxBytes is None


@pytest.mark.parametrize(
    "unknown",
    [
        pytest.param(b"\xa8\x06\x96\x01", id="varint"),
        pytest.param(b"\xa9\x06" + bytes(8), id="i64"),
        pytest.param(b"\xaa\x06\x03abc", id="len"),
        pytest.param(b"\xad\x06" + bytes(4), id="i32"),
        pytest.param(b"\x68\x05", id="field-13-one-byte-tag"),
        pytest.param(b"\xf8\xff\xff\xff\x0f\x01", id="largest-field-number"),
    ],
)
def test_unknown_fields_of_every_wire_type_are_skipped(unknown: bytes) -> None:
    msg = Message(offset=5, value=b"v", stream="s")
    assert Message.decode(unknown + msg.encode() + unknown) == msg


def test_last_scalar_wins() -> None:
    data = Message(offset=1, stream="a").encode() + Message(offset=2).encode()
    assert Message.decode(data) == Message(offset=2, stream="a")


def test_repeated_int32_accepts_packed_and_unpacked_and_merges_them() -> None:
    packed = PauseStreamRequest(partitions=[1, 2]).encode()
    assert packed == b"\x12\x02\x01\x02"
    unpacked = b"\x10\x03\x10\x04"
    assert PauseStreamRequest.decode(packed + unpacked + packed).partitions == [
        1,
        2,
        3,
        4,
        1,
        2,
    ]


def test_negative_int32_is_a_ten_byte_varint() -> None:
    assert PauseStreamRequest(partitions=[-1]).encode() == b"\x12\x0a" + b"\xff" * 9 + b"\x01"
    assert Message(partition=-1).encode() == b"\x30" + b"\xff" * 9 + b"\x01"


def test_int32_takes_the_low_32_bits_of_a_wide_varint() -> None:
    # What protobuf does with an int64 value written into an int32 field.
    assert Message.decode(b"\x30\xff\xff\xff\xff\x0f").partition == -1
    assert Message.decode(b"\x30\x80\x80\x80\x80\x10").partition == 0


def test_unknown_enum_values_decode_to_the_int() -> None:
    ack = Ack.decode(b"\x38\x07\x50\x02")
    assert ack.ackPolicy == 7
    assert type(ack.ackPolicy) is int
    assert ack.ackError is Ack.Error.INCORRECT_OFFSET
    assert Message.decode(b"\x60\x01").ackPolicy is AckPolicy.ALL


def test_set_wrapper_holding_zero_is_not_absent() -> None:
    req = CreateStreamRequest(retentionMaxBytes=0, compactEnabled=False, minIsr=None)
    assert req.encode() == b"\x32\x00\x6a\x00"
    assert CreateStreamRequest.decode(req.encode()) == req


def test_map_entry_without_key_or_value_gets_defaults() -> None:
    assert Message.decode(b"\x4a\x00").headers == {"": b""}
    assert StreamMetadata.decode(b"\x22\x00").partitions[0].leader == ""


def test_map_key_seen_twice_keeps_the_last_value() -> None:
    data = Message(headers={"k": b"1"}).encode() + Message(headers={"k": b"2"}).encode()
    assert Message.decode(data).headers == {"k": b"2"}


def test_map_encodes_in_dict_order_with_key_and_value_always_written() -> None:
    msg = Message(headers={"b": b"", "a": b"x"})
    assert msg.encode() == b"\x4a\x05\x0a\x01b\x12\x00" + b"\x4a\x06\x0a\x01a\x12\x01x"


def test_range_decoder_does_not_read_past_its_end() -> None:
    # The varint of offset continues past the range into the rest of the buffer.
    with pytest.raises(DecodeError, match="truncated"):
        decode_message_range(b"\x08\x80\x01", 0, 2)
    with pytest.raises(ValueError, match="outside"):
        decode_message_range(b"\x08\x01", 1, 5)


# -- malformed input -------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "data", "match"),
    [
        pytest.param(
            Message,
            b"\x1a\x05abc",
            r"Message\.value: length 5 runs past",
            id="length-beyond-buffer",
        ),
        pytest.param(Message, b"\x08", r"Message\.offset: truncated", id="truncated-varint"),
        pytest.param(
            Message,
            b"\x08\x80",
            r"Message\.offset: truncated",
            id="truncated-varint-continuation",
        ),
        pytest.param(
            Message,
            b"\x08" + b"\xff" * 10 + b"\x01",
            r"Message\.offset: varint longer than 10 bytes",
            id="varint-11-bytes",
        ),
        pytest.param(Message, b"\x80", r"Message\.tag: truncated", id="truncated-tag"),
        pytest.param(
            Message,
            b"\x0d\x01\x02\x03\x04",
            r"Message\.offset: wire type 5, expected 0",
            id="wrong-wire-type-i32",
        ),
        pytest.param(
            Message,
            b"\x1b",
            r"Message\.value: wire type 3, expected 2",
            id="wrong-wire-type-group",
        ),
        pytest.param(
            Message,
            b"\x08\x01\x00\x00",
            r"Message\.tag: invalid field number 0",
            id="field-number-0",
        ),
        pytest.param(Message, b"\xa3\x06\xa4\x06", r"groups .* not supported", id="group"),
        pytest.param(Message, b"\xae\x06\x00", r"invalid wire type 6", id="wire-type-6"),
        pytest.param(
            Message,
            b"\xa9\x06\x00\x00",
            r"Message\.field 101: truncated fixed-width",
            id="truncated-i64",
        ),
        pytest.param(
            Message,
            b"\x2a\x01\xff",
            r"Message\.stream: invalid UTF-8",
            id="invalid-utf8",
        ),
        pytest.param(
            Message,
            b"\x2a\x03\xed\xa0\x80",
            r"Message\.stream: invalid UTF-8",
            id="utf8-surrogate",
        ),
        pytest.param(
            Message,
            b"\x4a\x03\x0a\x01\xff",
            r"Message\.headers: invalid UTF-8",
            id="invalid-utf8-map-key",
        ),
        pytest.param(
            Message,
            b"\x4a\x02\x08\x01",
            r"Message\.headers: map entry: bad tag 8",
            id="map-key-wrong-type",
        ),
        pytest.param(
            PauseStreamRequest,
            b"\x12\x01\x80\x01",
            r"PauseStreamRequest\.partitions: packed varint runs past",
            id="packed-varint-past-field",
        ),
        pytest.param(
            CreateStreamRequest,
            b"\x32\x01\x08",
            r"CreateStreamRequest\.retentionMaxBytes: truncated",
            id="wrapper-truncated",
        ),
        pytest.param(
            Ack,
            b"\x22\x00",
            r"Ack\.offset: wire type 2, expected 0",
            id="ack-wrong-wire-type",
        ),
        pytest.param(
            FetchMetadataResponse,
            b"\x12\x03\x0a\x01\xff",
            r"FetchMetadataResponse\.streamMetadata > StreamMetadata\.name: invalid",
            id="nested-path-in-message",
        ),
        pytest.param(
            FetchMetadataResponse,
            b"\x12\x06\x22\x04\x12\x02\x10\x01",
            r"StreamMetadata\.partitions > PartitionMetadata\.leader: wire type 0",
            id="nested-in-map-value",
        ),
    ],
)
def test_malformed_input_raises_decode_error_naming_the_field(
    cls: type[WireMessage], data: bytes, match: str
) -> None:
    with pytest.raises(DecodeError, match=match):
        cls.decode(data)


def test_decode_error_is_a_value_error() -> None:
    assert issubclass(DecodeError, ValueError)


def test_huge_length_prefix_fails_without_allocating() -> None:
    with pytest.raises(DecodeError, match="runs past"):
        Message.decode(b"\x1a\xff\xff\xff\xff\xff\xff\xff\xff\x7f")


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    # No Liftbridge message is recursive, so only the decoder's own depth
    # argument can reach the limit.
    with pytest.raises(DecodeError, match="nesting deeper than 100"):
        StreamMetadata().merge_range(b"", 0, 0, MAX_DEPTH + 1)


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(TypeError):
        Message.decode("text")  # type: ignore[arg-type]


# -- fuzz ----------------------------------------------------------------------


@pytest.mark.parametrize("cls", MESSAGE_CLASSES, ids=lambda cls: cls.__name__)
@settings(FUZZ, max_examples=examples(60))
@given(data=st.binary(max_size=64))
def test_arbitrary_bytes_only_ever_raise_decode_error(cls: type[WireMessage], data: bytes) -> None:
    try:
        msg = cls.decode(data)
    except DecodeError:
        return
    # Whatever we accept, protobuf accepts too, and reads as the same message.
    assert msg == from_pb(cls, pb_class(cls).FromString(data))


def _generic(data: bytes) -> Message | DecodeError:
    msg = Message()
    try:
        msg.merge_range(data, 0, len(data), 0)
    except DecodeError as exc:
        return exc
    return msg


@FUZZ
@given(
    msg=message_strategy(Message),
    cut=st.integers(0, 400),
    flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=3),
)
def test_damaged_messages_decode_like_the_generic_decoder(
    msg: Message, cut: int, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(msg.encode())
    for index, byte in flips:
        if data:
            data[index % len(data)] = byte
    damaged = bytes(data[: cut % (len(data) + 1)])
    expected = _generic(damaged)
    if isinstance(expected, DecodeError):
        with pytest.raises(DecodeError) as info:
            Message.decode(damaged)
        assert str(info.value) == str(expected)
    else:
        assert Message.decode(damaged) == expected


def _generic_of(cls: type[WireMessage], data: bytes) -> WireMessage | DecodeError:
    msg = cls()
    try:
        msg.merge_range(data, 0, len(data), 0)
    except DecodeError as exc:
        return exc
    return msg


@pytest.mark.parametrize("cls", [Ack, PublishResponse], ids=lambda cls: cls.__name__)
@settings(FUZZ, max_examples=examples(150))
@given(
    data=st.data(),
    cut=st.integers(0, 400),
    flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=3),
)
def test_damaged_acks_decode_like_the_generic_decoder(
    cls: type[WireMessage], data: st.DataObject, cut: int, flips: list[tuple[int, int]]
) -> None:
    blob = bytearray(data.draw(message_strategy(cls)).encode())
    for index, byte in flips:
        if blob:
            blob[index % len(blob)] = byte
    damaged = bytes(blob[: cut % (len(blob) + 1)])
    expected = _generic_of(cls, damaged)
    if isinstance(expected, DecodeError):
        with pytest.raises(DecodeError) as info:
            cls.decode(damaged)
        assert str(info.value) == str(expected)
    else:
        assert cls.decode(damaged) == expected


@FUZZ
@given(req=message_strategy(PublishRequest), data=st.binary(max_size=40))
def test_arbitrary_suffix_on_a_publish_request(req: PublishRequest, data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        PublishRequest.decode(req.encode() + data)


@FUZZ
@given(value=st.integers(0, 2**64 - 1), tail=st.binary(min_size=8, max_size=8))
def test_wide_varint_reader_agrees_with_the_plain_one(value: int, tail: bytes) -> None:
    data = c.encode_varint(value) + tail
    assert (
        c.decode_varint8(data, 0)
        == c.decode_varint(data, 0)
        == (
            value,
            len(data) - 8,
        )
    )


@pytest.mark.parametrize("value", [-1, -(2**63), 2**63 - 1, 2**64 - 1, 0, 127, 128])
def test_varint_extremes(value: int) -> None:
    data = c.encode_varint(value)
    assert len(data) == (10 if value < 0 else max(1, (value.bit_length() + 6) // 7))
    assert c.decode_varint(data, 0) == (value & (2**64 - 1), len(data))


# -- decode_streamed: a subscription's lists -----------------------------------


# Message's fields in the order decode_streamed gives them (lbwire.types.Message's).
_STREAMED = "value subject offset timestamp key partition headers stream replySubject correlationId"
_STREAMED_FIELDS = _STREAMED.split()


def _fields(*fields: object) -> tuple[object, ...]:
    return fields


def _streamed_like_the_decoder(
    received: list[bytes], min_offset: int, tails: StreamedTails
) -> None:
    out, error = decode_streamed(received, _fields, min_offset, tails)
    expected: list[tuple[object, ...]] = []
    expected_error = None
    for data in received:
        try:
            msg = Message.decode(data)
        except DecodeError as exc:
            expected_error = str(exc)
            break
        if msg.offset >= min_offset:
            expected.append(tuple(getattr(msg, name) for name in _STREAMED_FIELDS))
    assert (None if error is None else str(error)) == expected_error
    assert out == expected
    # Every message has a headers dict of its own.
    assert len({id(fields[6]) for fields in out}) == len(out)


@FUZZ
@given(
    base=message_strategy(Message),
    heads=st.lists(
        st.tuples(st.integers(-(2**63), 2**63 - 1), st.binary(max_size=3), st.binary(max_size=200)),
        max_size=5,
    ),
    suffix=st.sampled_from([b"", b"\x08\x05", b"\x1a\x01x", b"\x20\x01", b"\x12\x00", b"\x68\x01"]),
    cut=st.integers(0, 400),
    min_offset=st.integers(-2, 3),
)
def test_streamed_messages_decode_like_the_decoder(
    base: Message,
    heads: list[tuple[int, bytes, bytes]],
    suffix: bytes,
    cut: int,
    min_offset: int,
) -> None:
    # Messages sharing what follows the timestamp (as a partition's do),
    # each with its own offset, key and value; the tail may repeat an
    # earlier field (which then wins), and the last message may be cut.
    received = [base.encode() + suffix]
    for offset, key, value in heads:
        msg = Message.decode(base.encode())
        msg.offset, msg.key, msg.value = offset, key, value
        msg.timestamp = base.timestamp or 1_700_000_000_000_000_000
        received.append(msg.encode() + suffix)
    received.append(received[-1][: cut % (len(received[-1]) + 1)])
    tails = StreamedTails()
    _streamed_like_the_decoder(received, min_offset, tails)
    _streamed_like_the_decoder(received, min_offset, tails)  # with the tails known


def test_a_tail_repeating_an_earlier_field_is_not_kept() -> None:
    msg = Message(offset=7, value=b"v", timestamp=2**62, stream="s", headers={"reply": b""})
    data = msg.encode() + b"\x08\x09"  # offset 9 after the stream: it wins
    tails = StreamedTails()
    for _ in range(2):
        out, error = decode_streamed([data], _fields, 0, tails)
        assert error is None
        assert out[0][2] == 9
    assert tails.known == {}


def test_streamed_tails_are_bounded() -> None:
    tails = StreamedTails()
    received = [
        Message(offset=i, value=b"v", timestamp=2**62, correlationId=str(i)).encode()
        for i in range(200)
    ]
    out, error = decode_streamed(received, _fields, 0, tails)
    assert error is None
    assert [fields[9] for fields in out] == [str(i) for i in range(200)]
    assert 0 < len(tails.known) <= 64


def test_streamed_decoding_goes_back_to_known_tails_after_new_ones() -> None:
    # A run of messages with a tail each (a correlation id each) sends them
    # through the whole decoder; known tails are looked up again after it.
    received = [
        Message(offset=i, value=b"v", timestamp=2**62, correlationId=str(i)).encode()
        for i in range(100)
    ] + [
        Message(offset=i, value=b"v", timestamp=2**62, stream="s").encode() for i in range(100, 300)
    ]
    tails = StreamedTails()
    _streamed_like_the_decoder(received, 0, tails)
    assert tails.misses == 0
