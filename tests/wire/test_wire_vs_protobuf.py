"""Every message encodes and decodes exactly like protobuf (hypothesis)."""

from __future__ import annotations

from typing import Any

import pytest
from helpers.examples import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire_reference import (
    MESSAGE_CLASSES,
    from_pb,
    message_strategy,
    pb_class,
    to_pb,
    unknown_field_strategy,
)

from lbwire.wire import (
    Ack,
    AckError,
    AckPolicy,
    DecodeError,
    Message,
    PublishRequest,
    PublishResponse,
    WireMessage,
    decode_message_range,
)
from lbwire.wire import _codec as c
from lbwire.wire import messages as messages_module
from lbwire.wire.messages import decode_ack_range, split_publish_response

# Fifty classes: keep each one's example count moderate (the suite runs on PyPy).
PER_CLASS = settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
HOT_PATH = settings(PER_CLASS, max_examples=examples(300))

by_name = pytest.mark.parametrize("cls", MESSAGE_CLASSES, ids=lambda cls: cls.__name__)


def generic_decode(cls: type[WireMessage], data: bytes) -> WireMessage:
    """The table-driven decoder, bypassing hand-written fast paths."""
    msg = cls()
    msg.merge_range(data, 0, len(data), 0)
    return msg


def has_multi_entry_map(msg: Any) -> bool:
    for f in type(msg).fields():
        value = getattr(msg, f.name)
        if f.kind == c.K_MAP_STR_BYTES and len(value) > 1:
            return True
        if f.kind == c.K_MAP_INT32_MESSAGE:
            if len(value) > 1 or any(map(has_multi_entry_map, value.values())):
                return True
        elif f.kind == c.K_MESSAGE and value is not None:
            if has_multi_entry_map(value):
                return True
        elif f.kind == c.K_REP_MESSAGE and any(map(has_multi_entry_map, value)):
            return True
    return False


@by_name
@PER_CLASS
@given(data=st.data())
def test_encoding_is_protobufs(cls: type[WireMessage], data: st.DataObject) -> None:
    msg = data.draw(message_strategy(cls))
    ours = msg.encode()
    pb = to_pb(msg)
    theirs = pb.SerializeToString(deterministic=True)

    # protobuf reads our bytes as the same message, whatever the map order.
    assert pb_class(cls).FromString(ours) == pb
    # Without maps to order, the bytes are identical.
    if not has_multi_entry_map(msg):
        assert ours == theirs
    # With maps, upb's "deterministic" order is not plain sorting, so compare
    # bytes after taking protobuf's order (decode keeps wire order in dicts).
    assert cls.decode(theirs).encode() == theirs


@by_name
@PER_CLASS
@given(data=st.data())
def test_decoding_protobufs_bytes(cls: type[WireMessage], data: st.DataObject) -> None:
    msg = data.draw(message_strategy(cls))
    theirs = to_pb(msg).SerializeToString()
    assert cls.decode(theirs) == msg
    assert cls.decode(msg.encode()) == msg
    assert cls.FromString(memoryview(theirs)) == msg
    assert cls.decode(bytearray(msg.SerializeToString())) == msg


@by_name
@PER_CLASS
@given(data=st.data())
def test_concatenation_merges_like_protobuf(cls: type[WireMessage], data: st.DataObject) -> None:
    # Concatenated encodings merge: last scalar wins, repeated fields append,
    # nested messages merge, map keys are replaced. Unknown fields in between.
    first = data.draw(message_strategy(cls)).encode()
    second = data.draw(message_strategy(cls)).encode()
    unknown = b"".join(data.draw(st.lists(unknown_field_strategy(), max_size=3)))
    blob = unknown + first + unknown + second + unknown
    expected = from_pb(cls, pb_class(cls).FromString(blob))
    assert cls.decode(blob) == expected
    assert generic_decode(cls, blob) == expected


@HOT_PATH
@given(msg=message_strategy(Message), unknown=st.lists(unknown_field_strategy()))
def test_message_fast_decoder_agrees_with_generic(msg: Message, unknown: list[bytes]) -> None:
    data = msg.encode() + b"".join(unknown)
    assert Message.decode(data) == generic_decode(Message, data) == msg


@pytest.mark.parametrize("cls", [Ack, PublishResponse], ids=lambda cls: cls.__name__)
@HOT_PATH
@given(data=st.data())
def test_ack_fast_decoders_agree_with_generic(cls: type[WireMessage], data: st.DataObject) -> None:
    msg = data.draw(message_strategy(cls))
    unknown = b"".join(data.draw(st.lists(unknown_field_strategy(), max_size=2)))
    blob = msg.encode()
    assert cls.decode(blob) == generic_decode(cls, blob) == msg
    # Unknown fields send it down the generic path: same result.
    assert cls.decode(blob + unknown) == generic_decode(cls, blob + unknown) == msg


def test_message_header_without_value_field_is_empty() -> None:
    # What a v1.9.0 server streams: a "reply" header entry with no value
    # field at all, then a "subject" header.
    data = b"J\x07\n\x05replyJ\x17\n\x07subject\x12\x0cbench-stream"
    msg = Message.decode(data)
    assert msg.headers == {"reply": b"", "subject": b"bench-stream"}
    assert msg == generic_decode(Message, data)


@HOT_PATH
@given(msg=message_strategy(Message), prefix=st.binary(max_size=8))
def test_message_range_decoder_reads_only_its_range(msg: Message, prefix: bytes) -> None:
    data = msg.encode()
    # Trailing garbage after the range must be ignored.
    buf = prefix + data + b"\xff\xff"
    assert decode_message_range(buf, len(prefix), len(prefix) + len(data)) == msg


@HOT_PATH
@given(req=message_strategy(PublishRequest))
def test_publish_request_fast_encoder_agrees_with_generic(req: PublishRequest) -> None:
    assert req.encode() == WireMessage.encode(req)


@HOT_PATH
@given(data=st.data())
def test_split_publish_response_agrees_with_the_full_decoder(data: st.DataObject) -> None:
    msg = data.draw(message_strategy(PublishResponse))
    unknown = b"".join(data.draw(st.lists(unknown_field_strategy(), max_size=2)))
    for blob in (msg.encode(), msg.encode() + unknown, data.draw(st.binary(max_size=40))):
        parts = split_publish_response(blob)
        if parts is None:
            continue  # the full decoder's turn
        # Only the usual shape is split: an ack and a correlation id at most, nothing else.
        full = PublishResponse.decode(blob)
        correlation_id, start, stop = parts
        assert full.asyncError is None
        assert correlation_id == full.correlationId
        assert (decode_ack_range(blob, start, stop) if start >= 0 else None) == full.ack


def _server_ack(draw: Any) -> Ack:
    """An ack laid out as the server writes one (what `_ack_fast` reads without a loop)."""
    timestamp = st.one_of(
        st.integers(2**56, 2**63 - 1),  # nine bytes: every timestamp from 2004 to 2116
        st.integers(-(2**63), 2**63 - 1),
    )
    return Ack(
        stream=draw(st.text(min_size=1, max_size=140)),
        partitionSubject=draw(st.text(min_size=1, max_size=140)),
        msgSubject=draw(st.text(min_size=1, max_size=140)),
        offset=draw(st.one_of(st.integers(0, 2**21), st.integers(-(2**63), 2**63 - 1))),
        ackInbox=draw(st.sampled_from(["", "liftbridge-default.ack.L62mwCkcOO73kptYNkYFJG"])),
        correlationId=draw(st.text(max_size=40)),
        ackPolicy=draw(st.sampled_from(list(AckPolicy))),
        receptionTimestamp=draw(timestamp),
        commitTimestamp=draw(timestamp),
        ackError=draw(st.sampled_from([AckError.OK, AckError.OK, AckError.INCORRECT_OFFSET])),
    )


server_acks = st.composite(_server_ack)


@HOT_PATH
@given(ack=server_acks(), flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255))))
def test_acks_as_the_server_writes_them_decode_like_the_generic_decoder(
    ack: Ack, flips: list[tuple[int, int]]
) -> None:
    blob = ack.encode()
    assert Ack.decode(blob) == generic_decode(Ack, blob) == ack
    # In a range of a larger buffer (a PublishResponse's), bytes after it unread.
    response = PublishResponse(ack=ack, correlationId="after").encode()
    parts = split_publish_response(response)
    assert parts is not None
    assert decode_ack_range(response, parts[1], parts[2]) == ack
    damaged = bytearray(blob)
    for index, byte in flips:
        damaged[index % len(damaged)] = byte
    try:
        expected = generic_decode(Ack, bytes(damaged))
    except DecodeError:
        with pytest.raises(DecodeError):
            Ack.decode(bytes(damaged))
    else:
        assert Ack.decode(bytes(damaged)) == expected


def test_the_usual_ack_takes_the_path_without_a_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    def loop(*_: Any) -> None:
        raise AssertionError("the usual ack went down the loop")

    ack = Ack(
        stream="orders",
        partitionSubject="orders",
        msgSubject="orders",
        offset=123_456,
        ackInbox="liftbridge-default.ack.L62mwCkcOO73kptYNkYFJG",  # as a server sets it
        correlationId="0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        ackPolicy=AckPolicy.ALL,
        receptionTimestamp=1_796_000_000_000_000_000,
        commitTimestamp=1_796_000_000_000_500_000,
    )
    blob = ack.encode()
    monkeypatch.setattr(messages_module, "_ack_fields", loop)
    assert decode_ack_range(blob, 0, len(blob)) == ack
