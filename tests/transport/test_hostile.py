"""Broken and hostile servers: what the sans-IO core makes of bytes it should never get.

The outcome is always one of two, never an exception out of ``receive_data``,
a loop, or a buffer that grows with what the peer sends: the call whose stream
is bad ends with a status (INTERNAL, RESOURCE_EXHAUSTED, UNKNOWN) and its stream
is reset, leaving the other calls alone; or, when the connection's state can no
longer be trusted (framing, HPACK, connection flow control), every call ends
with UNAVAILABLE, a GOAWAY is queued and nothing more is accepted.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import pytest
from h2.errors import ErrorCodes
from h2pair import Pair, frame, h2_frame, literal_block
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lbwire.grpc import Status
from lbwire.grpc.protocol import (
    MAX_HEADER_BLOCK_SIZE,
    CallEnded,
    ConnectionClosed,
    Event,
    GoAwayReceived,
    MessagesReceived,
)

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE = 0, 1, 2, 3, 4, 5
PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 6, 7, 8, 9
END_STREAM, END_HEADERS, PADDED, ACK = 0x1, 0x4, 0x8, 0x1
MAX_FRAME = 16_384
MAX_MESSAGE = 4 * 1024 * 1024
CONNECTION_WINDOW = 16 * 1024 * 1024
STREAM_WINDOW = 4 * 1024 * 1024

try:
    import tracemalloc
except ImportError:  # PyPy has no tracemalloc
    tracemalloc = None  # type: ignore[assignment]
#: The memory bounds are measured with tracemalloc, which PyPy lacks.
needs_tracemalloc = pytest.mark.skipif(
    tracemalloc is None, reason="PyPy has no tracemalloc to measure the memory bound with"
)

OK_TRAILERS = literal_block([(b"grpc-status", b"0")])
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Session:
    """Two calls in progress on one connection, and the record of what became of them.

    Call A (stream 1) has its response headers and the first bytes of a
    message; call B (stream 3) has its response headers. Every event the
    client emits is checked as it comes (see :meth:`feed`), and the
    application's part is played: messages are consumed, or released once
    their call ended, as the channel does.
    """

    def __init__(self, *, consume: bool = True, **kwargs: Any) -> None:
        self.consume = consume
        self.stream_window = kwargs.get("stream_window", STREAM_WINDOW)
        self.connection_window = kwargs.get("connection_window", CONNECTION_WINDOW)
        self.pair = Pair(**kwargs)
        self.client = self.pair.client
        self.a = self.pair.call()
        self.b = self.pair.call()
        assert (self.a, self.b) == (1, 3)
        self.ended: Dict[int, CallEnded] = {}
        self.held: Dict[int, int] = {}  # credit of messages not consumed, by call
        self.received: Dict[int, List[bytes]] = {self.a: [], self.b: []}
        self.closed = False
        self.goaway_last: Optional[int] = None
        self.pair.headers(self.a)
        self.pair.headers(self.b)
        self.pair.server.send_data(self.a, frame(b"first message")[:3])
        self.feed(self.pair.server.data_to_send())

    def feed(self, data: bytes) -> List[Event]:
        client = self.client
        events = client.receive_data(data)
        for event in events:
            assert not self.closed, f"{event!r} after ConnectionClosed"
            if isinstance(event, CallEnded):
                assert event.stream_id not in self.ended, f"call {event.stream_id} ended twice"
                assert isinstance(event.status, Status)
                assert isinstance(event.message, str)
                self.ended[event.stream_id] = event
            elif isinstance(event, MessagesReceived):
                assert event.stream_id not in self.ended, "a message after the call's end"
                assert event.messages
                assert len(event.messages) == len(event.credits)
                for data, credit in zip(event.messages, event.credits):
                    assert 0 <= credit <= self.stream_window
                    self.received.setdefault(event.stream_id, []).append(data)
                    if self.consume:  # the application takes the message
                        client.consumed(event.stream_id, credit)
                    else:
                        self.held[event.stream_id] = self.held.get(event.stream_id, 0) + credit
            elif isinstance(event, ConnectionClosed):
                self.closed = True
                for stream_id in (self.a, self.b):
                    assert stream_id in self.ended
            elif isinstance(event, GoAwayReceived):
                self.goaway_last = event.last_stream_id
        self.check_bounded()
        return events

    def check_bounded(self) -> None:
        """Nothing the peer sends makes the protocol hold more than its limits."""
        client = self.client
        assert client.incomplete_frame_size < 9 + MAX_FRAME
        assert client.incomplete_header_block_size <= MAX_HEADER_BLOCK_SIZE
        for stream_id in client.call_ids:
            assert client.message_buffer_size(stream_id) < 5 + MAX_MESSAGE + MAX_FRAME
        if self.closed:
            assert client.active_calls == 0
            assert client.receive_data(b"\x00" * 100) == []  # nothing more is accepted

    def finish_b(self) -> None:
        """The server completes call B properly; it must work if the connection does."""
        if self.b in self.ended:
            return
        self.feed(
            h2_frame(DATA, 0, self.b, frame(b"still fine"))
            + h2_frame(HEADERS, END_HEADERS | END_STREAM, self.b, OK_TRAILERS)
        )
        if not self.closed:
            assert self.ended[self.b].status is Status.OK
            assert self.received[self.b] == [b"still fine"]

    def check_no_credit_leaked(self) -> None:
        if self.closed:
            return
        client = self.client
        assert client.inbound_window + client.unacknowledged_credit == self.connection_window
        for stream_id in client.call_ids:
            window = client.stream_credit(stream_id) + self.held.get(stream_id, 0)
            assert window == self.stream_window, f"call {stream_id} lost credit"


def assert_connection_failed(session: Session, code: ErrorCodes) -> None:
    assert session.closed
    assert all(session.ended[s].status is Status.UNAVAILABLE for s in (session.a, session.b))
    goaway = session.client.data_to_send()
    # A GOAWAY (type 7) carrying the error code, last in what is queued.
    position = goaway.rfind(b"\x07\x00\x00\x00\x00\x00")
    assert position >= 3, "no GOAWAY queued"
    assert int.from_bytes(goaway[position + 10 : position + 14], "big") == code


def assert_only_a_failed(session: Session, status: Status) -> None:
    assert not session.closed
    assert session.ended[session.a].status is status, session.ended[session.a]
    session.finish_b()
    session.check_no_credit_leaked()


# -- fuzzing -------------------------------------------------------------------

_header_fields = st.lists(
    st.tuples(
        st.sampled_from(
            [b":status", b"content-type", b"grpc-status", b"grpc-message", b"x-k", b"x-k-bin"]
        ),
        st.one_of(st.sampled_from([b"200", b"0", b"13", b"application/grpc"]), st.binary()),
    ),
    max_size=4,
)
# Payloads that get past the first checks: header blocks, gRPC messages.
_payloads = st.one_of(
    st.binary(max_size=80),
    _header_fields.map(literal_block),
    st.builds(
        lambda flag, length, body: bytes([flag]) + length.to_bytes(4, "big") + body,
        st.integers(0, 2),
        st.one_of(st.integers(0, 40), st.integers(0, 2**32 - 1)),
        st.binary(max_size=40),
    ),
)
# Frames for call A, for the connection (stream 0), for streams that were
# never opened (odd above the last, even): never for call B.
_frames = st.lists(
    st.tuples(
        st.integers(0, 11),  # type (10, 11: unknown)
        st.one_of(st.sampled_from([0, 1, 4, 5]), st.integers(0, 255)),  # flags
        st.sampled_from([0, 1, 1, 1, 5, 2, 2**31 - 1]),  # stream id
        _payloads,
    ),
    max_size=12,
)


# Frames for call A that are well-formed HTTP/2, whatever they mean to gRPC:
# a bad call, never a bad connection.
_call_a_frames = st.lists(
    st.one_of(
        st.builds(
            lambda end, payload: h2_frame(DATA, end, 1, payload),
            st.sampled_from([0, END_STREAM]),
            _payloads,
        ),
        st.builds(
            lambda end, fields: h2_frame(HEADERS, END_HEADERS | end, 1, literal_block(fields)),
            st.sampled_from([0, END_STREAM]),
            _header_fields,
        ),
        st.builds(
            lambda increment: h2_frame(WINDOW_UPDATE, 0, 1, increment.to_bytes(4, "big")),
            st.integers(0, 2**31 - 1),
        ),
        st.builds(
            lambda code: h2_frame(RST_STREAM, 0, 1, code.to_bytes(4, "big")),
            st.integers(0, 2**32 - 1),
        ),
        st.builds(lambda payload: h2_frame(PRIORITY, 0, 1, payload), st.binary(max_size=6)),
    ),
    max_size=10,
)


@FUZZ
@given(frames=_call_a_frames)
def test_fuzzed_frames_of_one_call_never_hurt_another(frames: List[bytes]) -> None:
    session = Session()
    for wire in frames:
        session.feed(wire)
    assert not session.closed
    assert session.b not in session.ended
    session.finish_b()
    session.check_no_credit_leaked()


@FUZZ
@given(frames=_frames)
def test_fuzzed_frames_fail_the_call_they_are_for_or_the_connection(
    frames: List[Tuple[int, int, int, bytes]],
) -> None:
    session = Session()
    for frame_type, flags, stream_id, payload in frames:
        session.feed(h2_frame(frame_type, flags, stream_id, payload))
    if session.b in session.ended:
        # Only a GOAWAY below B's stream id or a broken connection ends B.
        assert session.ended[session.b].status is Status.UNAVAILABLE
        assert session.closed or (session.goaway_last is not None and session.goaway_last < 3)
    session.finish_b()
    session.check_no_credit_leaked()


@FUZZ
@given(data=st.binary(max_size=600), cuts=st.lists(st.integers(1, 64), max_size=10))
def test_arbitrary_bytes_mid_call_in_any_pieces(data: bytes, cuts: List[int]) -> None:
    session = Session()
    position = 0
    for cut in [*cuts, len(data)]:
        session.feed(data[position : position + cut])
        position += cut
    session.check_no_credit_leaked()


@FUZZ
@given(
    header=st.binary(min_size=9, max_size=9),
    body=st.binary(max_size=200),
)
def test_arbitrary_frame_headers_right_after_the_preface(header: bytes, body: bytes) -> None:
    pair = Pair()
    events = pair.to_client(header + body)
    if any(isinstance(e, ConnectionClosed) for e in events):
        assert pair.client.receive_data(b"more") == []
    # Whatever it was, a frame longer than the limit is never buffered.
    assert pair.client.incomplete_frame_size < 9 + MAX_FRAME


# -- gRPC framing ----------------------------------------------------------------


@needs_tracemalloc
def test_4_gb_length_prefix_fails_the_call_without_allocating() -> None:
    session = Session()
    tracemalloc.start()
    try:
        session.feed(h2_frame(DATA, 0, session.b, b"\x00\xff\xff\xff\xff" + b"x" * 100))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    end = session.ended[session.b]
    assert end.status is Status.RESOURCE_EXHAUSTED
    assert "4294967295" in end.message
    assert peak < 64 * 1024
    # The rest of the message, still in flight, is dropped and credited back.
    session.feed(h2_frame(DATA, 0, session.b, b"y" * MAX_FRAME))
    session.feed(h2_frame(DATA, 0, session.a, frame(b"first message")[3:]))
    assert session.received[session.a] == [b"first message"]
    session.check_no_credit_leaked()


@pytest.mark.parametrize("split", [False, True])
def test_compressed_flag_without_an_encoding_fails_only_that_call(split: bool) -> None:
    session = Session()
    message = frame(b"zipped?", flag=1)
    if split:
        session.feed(h2_frame(DATA, 0, session.b, message[:2]))
        session.feed(h2_frame(DATA, 0, session.b, message[2:]))
    else:
        session.feed(h2_frame(DATA, 0, session.b, message))
    assert session.ended[session.b].status is Status.INTERNAL
    assert "compress" in session.ended[session.b].message
    session.feed(h2_frame(DATA, 0, session.a, frame(b"first message")[3:]))
    assert session.received[session.a] == [b"first message"]
    session.check_no_credit_leaked()


def test_a_response_fed_one_byte_at_a_time() -> None:
    # Every boundary: inside frame headers, prefixes, payloads, header blocks.
    session = Session()
    wire = (
        h2_frame(DATA, 0, session.b, frame(b"one") + frame(b"two")[:4])
        + h2_frame(DATA, 0, session.b, frame(b"two")[4:] + frame(b""))
        + h2_frame(HEADERS, END_HEADERS | END_STREAM, session.b, OK_TRAILERS)
    )
    for i in range(len(wire)):
        session.feed(wire[i : i + 1])
    assert session.received[session.b] == [b"one", b"two", b""]
    assert session.ended[session.b].status is Status.OK
    session.check_no_credit_leaked()


def test_data_after_end_stream_is_dropped_and_credited() -> None:
    session = Session()
    session.feed(h2_frame(HEADERS, END_HEADERS | END_STREAM, session.b, OK_TRAILERS))
    assert session.ended[session.b].status is Status.OK
    session.feed(h2_frame(DATA, 0, session.b, frame(b"late") * 100))
    session.feed(h2_frame(DATA, END_STREAM, session.b, frame(b"later")))
    assert session.received[session.b] == []
    assert not session.closed
    session.feed(h2_frame(DATA, 0, session.a, frame(b"first message")[3:]))
    assert session.received[session.a] == [b"first message"]
    session.check_no_credit_leaked()


@pytest.mark.parametrize(
    "value", [b"", b"abc", b"-1", b"1_0", b" 0", b"+3", b"00000000000000000001", b"\xff", b"17"]
)
def test_bad_grpc_status_is_unknown_with_a_message(value: bytes) -> None:
    session = Session()
    trailers = literal_block([(b"grpc-status", value), (b"grpc-message", b"%zz\xff")])
    session.feed(h2_frame(HEADERS, END_HEADERS | END_STREAM, session.b, trailers))
    end = session.ended[session.b]
    assert end.status is Status.UNKNOWN
    assert end.message
    assert not session.closed


def test_trailers_without_end_stream_fail_only_that_call() -> None:
    session = Session()
    session.feed(h2_frame(HEADERS, END_HEADERS, session.a, OK_TRAILERS))
    assert_only_a_failed(session, Status.INTERNAL)


def test_a_stream_ended_without_response_headers_fails_only_that_call() -> None:
    # DATA before the response headers is accepted, as grpc-go's client does
    # (test_protocol.py shows why); a stream that ends without any is broken.
    session = Session()
    third = session.pair.call()
    session.feed(h2_frame(DATA, 0, third, frame(b"early")))
    assert third not in session.ended
    session.feed(h2_frame(DATA, END_STREAM, third, b""))
    assert session.ended[third].status is Status.INTERNAL
    assert "without response headers" in session.ended[third].message
    session.finish_b()
    session.check_no_credit_leaked()


def test_data_beyond_the_stream_window_fails_only_that_call() -> None:
    # Complete messages nobody reads: their credit is held until they are.
    session = Session(consume=False, stream_window=65_535)
    message = frame(b"m" * (MAX_FRAME - 5))
    for _ in range(5):  # 80 KiB into a 64 KiB window
        session.feed(h2_frame(DATA, 0, session.b, message))
    assert not session.closed
    assert session.ended[session.b].status is Status.INTERNAL
    assert "window" in session.ended[session.b].message
    assert len(session.received[session.b]) == 3  # then the window was full


def test_window_update_overflowing_a_stream_fails_only_that_call() -> None:
    session = Session()
    session.feed(h2_frame(WINDOW_UPDATE, 0, session.a, (2**31 - 1).to_bytes(4, "big")))
    assert_only_a_failed(session, Status.INTERNAL)


# -- headers -----------------------------------------------------------------------


def test_header_list_over_the_advertised_limit_fails_only_that_call() -> None:
    session = Session()
    big = literal_block([(b"x-big", b"v" * 70_000)])  # > 64 KiB, < MAX_HEADER_BLOCK_SIZE
    fragments = [big[i : i + MAX_FRAME] for i in range(0, len(big), MAX_FRAME)]
    wire = h2_frame(HEADERS, 0, session.a, fragments[0])
    for i, fragment in enumerate(fragments[1:], 2):
        wire += h2_frame(CONTINUATION, END_HEADERS if i == len(fragments) else 0, 1, fragment)
    session.feed(wire)
    assert_only_a_failed(session, Status.RESOURCE_EXHAUSTED)


@needs_tracemalloc
def test_header_block_over_the_limit_ends_the_connection_without_growing() -> None:
    session = Session()
    session.feed(h2_frame(HEADERS, 0, session.a, b""))
    tracemalloc.start()
    try:
        fragment = b"\x00" * MAX_FRAME
        for _ in range(MAX_HEADER_BLOCK_SIZE // MAX_FRAME + 2):
            session.feed(h2_frame(CONTINUATION, 0, session.a, fragment))
            if session.closed:
                break
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_connection_failed(session, ErrorCodes.ENHANCE_YOUR_CALM)
    assert peak < 2 * MAX_HEADER_BLOCK_SIZE


def test_endless_empty_continuation_frames_end_the_connection() -> None:
    session = Session()
    session.feed(h2_frame(HEADERS, 0, session.a, b""))
    empty = h2_frame(CONTINUATION, 0, session.a)
    for _ in range(1000):
        session.feed(empty)
        if session.closed:
            break
    assert_connection_failed(session, ErrorCodes.ENHANCE_YOUR_CALM)


@needs_tracemalloc
def test_hpack_bomb_ends_the_connection_without_growing() -> None:
    # One 4 KiB header added to the dynamic table, then referenced over and
    # over: each reference is one byte, and decodes to 4 KiB.
    session = Session()
    add = b"\x40" + literal_block([(b"x-bomb", b"b" * 4000)])[1:]  # incremental indexing
    block = add + b"\xbe" * 10_000  # index 62: the newest dynamic entry
    tracemalloc.start()
    try:
        session.feed(h2_frame(HEADERS, END_HEADERS, session.a, block[:MAX_FRAME]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_connection_failed(session, ErrorCodes.ENHANCE_YOUR_CALM)
    assert peak < 4 * MAX_HEADER_BLOCK_SIZE


@pytest.mark.parametrize(
    "block",
    [
        b"\x80",  # indexed field 0
        b"\xff\xff\xff\xff\xff\xff\xff\x7f",  # an index far past the table
        b"\x00\x7f",  # a name length longer than the block
        b"\x3f\xff\xff\xff\x7f",  # a table size above the limit
        b"\x00\x81\xff",  # invalid Huffman
    ],
)
def test_invalid_hpack_ends_the_connection(block: bytes) -> None:
    session = Session()
    session.feed(h2_frame(HEADERS, END_HEADERS, session.a, block))
    assert_connection_failed(session, ErrorCodes.COMPRESSION_ERROR)


def test_headers_of_a_forgotten_call_are_still_decoded() -> None:
    # The server's encoder indexed this header: our decoder must have done
    # the same, though the call was reset, or the next block is misread.
    session = Session()
    session.client.cancel(session.a)
    indexed = b"\x40" + literal_block([(b"x-k", b"v")])[1:]
    session.feed(h2_frame(HEADERS, END_HEADERS | END_STREAM, session.a, indexed))
    trailers = OK_TRAILERS + b"\xbe"  # index 62: x-k: v
    session.feed(h2_frame(HEADERS, END_HEADERS | END_STREAM, session.b, trailers))
    assert session.ended[session.b].status is Status.OK
    assert session.ended[session.b].trailers == (("x-k", "v"),)


def test_a_frame_interrupting_a_header_block_ends_the_connection() -> None:
    session = Session()
    session.feed(h2_frame(HEADERS, 0, session.a, OK_TRAILERS[:2]))
    session.feed(h2_frame(DATA, 0, session.b, frame(b"x")))
    assert_connection_failed(session, ErrorCodes.PROTOCOL_ERROR)


# -- HTTP/2 framing ----------------------------------------------------------------


@needs_tracemalloc
def test_frame_over_the_size_limit_is_refused_from_its_header() -> None:
    session = Session()
    tracemalloc.start()
    try:
        header = h2_frame(DATA, 0, session.a)[:9]
        huge = (2**24 - 1).to_bytes(3, "big") + header[3:]
        session.feed(huge + b"\x00" * 1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_connection_failed(session, ErrorCodes.FRAME_SIZE_ERROR)
    assert peak < 64 * 1024


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (h2_frame(DATA, 0, 0, b"x"), ErrorCodes.PROTOCOL_ERROR),
        (h2_frame(DATA, 0, 7, b"x"), ErrorCodes.PROTOCOL_ERROR),  # never opened
        (h2_frame(HEADERS, END_HEADERS, 2, OK_TRAILERS), ErrorCodes.PROTOCOL_ERROR),
        (h2_frame(RST_STREAM, 0, 9, b"\x00\x00\x00\x08"), ErrorCodes.PROTOCOL_ERROR),
        (h2_frame(RST_STREAM, 0, 1, b"\x00\x08"), ErrorCodes.FRAME_SIZE_ERROR),
        (h2_frame(PUSH_PROMISE, END_HEADERS, 1, b"\x00\x00\x00\x02"), ErrorCodes.PROTOCOL_ERROR),
        (h2_frame(CONTINUATION, END_HEADERS, 1, b""), ErrorCodes.PROTOCOL_ERROR),
        (h2_frame(WINDOW_UPDATE, 0, 0, b"\x00\x00\x00\x00"), ErrorCodes.PROTOCOL_ERROR),
        (h2_frame(WINDOW_UPDATE, 0, 0, b"\x7f\xff\xff\xff"), ErrorCodes.FLOW_CONTROL_ERROR),
        (h2_frame(WINDOW_UPDATE, 0, 1, b"\x00\x00\x01"), ErrorCodes.FRAME_SIZE_ERROR),
        (h2_frame(PING, 0, 0, b"short"), ErrorCodes.FRAME_SIZE_ERROR),
        (h2_frame(PING, 0, 1, b"12345678"), ErrorCodes.PROTOCOL_ERROR),
        (h2_frame(PRIORITY, 0, 0, b"\x00\x00\x00\x01\x10"), ErrorCodes.PROTOCOL_ERROR),
        (h2_frame(DATA, PADDED, 1, b"\x09" + b"x" * 8), ErrorCodes.PROTOCOL_ERROR),
        (h2_frame(HEADERS, PADDED | END_HEADERS, 1, b"\x05ab"), ErrorCodes.PROTOCOL_ERROR),
        (h2_frame(SETTINGS, 0, 1, b""), ErrorCodes.PROTOCOL_ERROR),
        # RFC 9113 6.5.2: an initial window above 2**31-1 is a flow-control error.
        (h2_frame(SETTINGS, 0, 0, b"\x00\x04\xff\xff\xff\xff"), ErrorCodes.FLOW_CONTROL_ERROR),
        (h2_frame(SETTINGS, 0, 0, b"\x00\x05\x00\x00\x00\x01"), ErrorCodes.PROTOCOL_ERROR),
        (h2_frame(SETTINGS, 0, 0, b"\x00\x02\x00\x00\x00\x02"), ErrorCodes.PROTOCOL_ERROR),
        (h2_frame(SETTINGS, 0, 0, b"\x00\x04\x00"), ErrorCodes.FRAME_SIZE_ERROR),
        (h2_frame(SETTINGS, ACK, 0, b"\x00\x04\x00\x00\x00\x00"), ErrorCodes.FRAME_SIZE_ERROR),
        (h2_frame(GOAWAY, 0, 0, b"\x00\x00\x00"), ErrorCodes.FRAME_SIZE_ERROR),
        (h2_frame(GOAWAY, 0, 1, b"\x00" * 8), ErrorCodes.PROTOCOL_ERROR),
    ],
    ids=lambda value: value.name if isinstance(value, ErrorCodes) else None,
)
def test_connection_errors_end_every_call_with_goaway(wire: bytes, code: ErrorCodes) -> None:
    session = Session()
    session.feed(wire)
    assert_connection_failed(session, code)


def test_frames_of_unknown_type_are_ignored() -> None:
    session = Session()
    session.feed(h2_frame(0xFA, 0xFF, 0, b"extension") + h2_frame(0x0B, 0, 1, b""))
    assert not session.closed
    session.finish_b()
