"""The sans-IO core, driven with plain bytes against a server-side H2Connection."""

from __future__ import annotations

import base64
from typing import Any, List, Tuple

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from h2.errors import ErrorCodes
from h2pair import OK_HEADERS, Pair, credits, ended, frame, h2_frame, messages, of
from hypothesis import given, settings
from hypothesis import strategies as st

from lbwire.grpc import Status
from lbwire.grpc.protocol import (
    CallEnded,
    ConnectionClosed,
    Event,
    GoAwayReceived,
    MessagesReceived,
    ResponseHeaders,
    decode_bin_value,
    decode_grpc_message,
    decode_metadata,
    encode_grpc_message,
    encode_grpc_timeout,
    encode_metadata,
)

# -- request headers -----------------------------------------------------------


def test_request_headers_are_grpc_over_http2() -> None:
    pair = Pair(user_agent="lbwire-test/1")
    stream_id = pair.call(
        "/pkg.Svc/Method",
        timeout=1.5,
        metadata=encode_metadata([("x-key", "v"), ("x-data-bin", b"\x00\x01\xfe\xff\x10")]),
    )
    assert pair.request_headers(stream_id) == [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", b"/pkg.Svc/Method"),
        (b":authority", b"example.test:50051"),
        (b"te", b"trailers"),
        (b"content-type", b"application/grpc"),
        (b"user-agent", b"lbwire-test/1"),
        (b"grpc-timeout", b"1500000u"),
        (b"x-key", b"v"),
        (b"x-data-bin", b"AAH+/xA"),  # base64 without padding
    ]


def test_cached_header_blocks_decode_identically_on_the_server() -> None:
    # The encoder reuses encoded blocks while the HPACK table is unchanged; the
    # server's decoder is the judge that the bytes stay right as the table
    # changes (new paths, indexed metadata) between calls.
    pair = Pair()
    for i in range(60):
        path = f"/pkg.Svc/M{i % 7}"
        metadata = encode_metadata([("x-n", str(i % 5))]) if i % 3 else []
        timeout = 2.0 if i % 2 else None
        stream_id = pair.call(path, timeout=timeout, metadata=metadata)
        headers = dict(pair.request_headers(stream_id))
        assert headers[b":path"] == path.encode()
        assert (b"grpc-timeout" in headers) == (timeout is not None)
        assert headers.get(b"x-n") == (str(i % 5).encode() if i % 3 else None)
        pair.client.cancel(stream_id)
        pair.to_server()


def test_header_table_size_changes_of_the_server_are_followed() -> None:
    # The server shrinks (to nothing) then restores our encoder's table: the
    # cached blocks must go, and the size updates be sent, or it misreads us.
    pair = Pair()
    for size in (0, 4096, 100):
        pair.server.update_settings({h2.settings.SettingCodes.HEADER_TABLE_SIZE: size})
        pair.to_client()
        for i in range(3):
            metadata = encode_metadata([("x-n", str(i))])
            stream_id = pair.call(f"/pkg.Svc/M{i % 2}", metadata=metadata)
            headers = dict(pair.request_headers(stream_id))
            assert headers[b":path"] == f"/pkg.Svc/M{i % 2}".encode()
            assert headers[b"x-n"] == str(i).encode()


def test_request_headers_larger_than_a_frame_go_in_continuation_frames() -> None:
    pair = Pair()
    big = "v" * 40_000
    stream_id = pair.call(metadata=encode_metadata([("x-big", big)]))
    assert dict(pair.request_headers(stream_id))[b"x-big"] == big.encode()


def test_https_scheme() -> None:
    pair = Pair(scheme="https")
    assert (b":scheme", b"https") in pair.request_headers(pair.call())


# -- messages ------------------------------------------------------------------


def test_message_in_one_frame() -> None:
    pair = Pair()
    stream_id = pair.call()
    pair.headers(stream_id)
    pair.server.send_data(stream_id, frame(b"hello"))
    events = pair.to_client()
    assert of(events, ResponseHeaders)[0].stream_id == stream_id
    assert messages(events) == [b"hello"]


def test_empty_message() -> None:
    pair = Pair()
    stream_id = pair.call()
    pair.headers(stream_id)
    pair.server.send_data(stream_id, frame(b""))
    pair.trailers(stream_id)
    events = pair.to_client()
    assert messages(events) == [b""]
    assert ended(events).status is Status.OK


def test_several_messages_in_one_frame() -> None:
    pair = Pair()
    stream_id = pair.call()
    pair.headers(stream_id)
    pair.server.send_data(stream_id, frame(b"a") + frame(b"") + frame(b"ccc"))
    assert messages(pair.to_client()) == [b"a", b"", b"ccc"]


def test_prefix_split_across_frames() -> None:
    pair = Pair()
    stream_id = pair.call()
    pair.headers(stream_id)
    pair.to_client()
    data = frame(b"payload")
    for i in range(len(data)):
        pair.server.send_data(stream_id, data[i : i + 1])
        events = pair.to_client()
        assert messages(events) == ([b"payload"] if i == len(data) - 1 else [])


@settings(max_examples=60, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=20),
)
def test_any_split_of_any_messages_reassembles(payloads: List[bytes], cuts: List[int]) -> None:
    pair = Pair()
    stream_id = pair.call()
    pair.headers(stream_id)
    pair.to_client()
    data = b"".join(frame(p) for p in payloads)
    received: List[bytes] = []
    credit = 0
    position = 0
    for cut in [*cuts, len(data)]:
        chunk = data[position : position + cut]
        position += len(chunk)
        if chunk:
            pair.server.send_data(stream_id, chunk)
            events = pair.to_client()
            received.extend(messages(events))
            credit += sum(credits(events))
    assert received == payloads
    # Credit is never handed out twice: what travels with messages is at most
    # what was received.
    assert credit <= len(data)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=40_000), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=1, max_value=20_000), max_size=30),
)
def test_any_split_of_the_byte_stream_gives_the_same_events(
    sizes: List[int], cuts: List[int]
) -> None:
    # Frames torn across reads (the client keeps the partial frame and
    # completes it from the next read) must give the same calls' results.
    pair = Pair()
    stream_id = pair.call()
    pair.headers(stream_id)
    payloads = [bytes([i]) * size for i, size in enumerate(sizes)]
    data = b"".join(frame(p) for p in payloads)
    for start in range(0, len(data), 16_384):
        pair.server.send_data(stream_id, data[start : start + 16_384])
    pair.trailers(stream_id)
    wire = pair.server.data_to_send()
    events: List[Event] = []
    position = 0
    for cut in [*cuts, len(wire)]:
        events.extend(pair.to_client(wire[position : position + cut]))
        position += cut
        if position >= len(wire):
            break
    assert messages(events) == payloads
    assert ended(events).status is Status.OK


def test_padding_counts_as_credit() -> None:
    pair = Pair()
    stream_id = pair.call()
    pair.headers(stream_id)
    pair.server.send_data(stream_id, frame(b"abc"), pad_length=10)
    (event,) = of(pair.to_client(), MessagesReceived)
    assert event.messages == [b"abc"]
    assert event.credits == [8 + 11]


def test_message_larger_than_window_completes_for_a_waiting_reader() -> None:
    # While the application waits for the message, its frames are credited as
    # they arrive: otherwise a message larger than the window never completes.
    pair = Pair(stream_window=65_535, connection_window=65_535)
    stream_id = pair.call()
    pair.headers(stream_id)
    data = frame(b"m" * 200_000)
    received: List[bytes] = []
    position = 0
    pair.client.want_message(stream_id)
    while position < len(data):
        window = pair.server.local_flow_control_window(stream_id)
        assert window > 0, "stalled: credit was not returned"
        size = min(window, pair.server.max_outbound_frame_size, len(data) - position)
        pair.server.send_data(stream_id, data[position : position + size])
        position += size
        received.extend(messages(pair.to_client()))
        pair.to_server()
    assert received == [b"m" * 200_000]


def test_a_message_in_progress_holds_its_credit_until_the_reader_waits() -> None:
    # Nobody reads: a large message in progress counts against the window
    # like complete ones, so the call holds at most its window.
    pair = Pair(stream_window=65_535, connection_window=65_535)
    stream_id = pair.call()
    pair.headers(stream_id)
    data = frame(b"m" * 200_000)
    position = 0
    while pair.server.local_flow_control_window(stream_id) > 0:
        size = min(pair.server.local_flow_control_window(stream_id), 16_384)
        pair.server.send_data(stream_id, data[position : position + size])
        position += size
        assert messages(pair.to_client()) == []
        pair.to_server()
    assert position == 65_535
    # The reader comes: what arrived is credited, and the rest can come.
    assert pair.client.want_message(stream_id)
    pair.to_server()
    assert pair.server.local_flow_control_window(stream_id) == 65_535


def test_credit_of_complete_messages_returns_only_when_consumed() -> None:
    pair = Pair(stream_window=65_535, connection_window=65_535)
    stream_id = pair.call()
    pair.headers(stream_id)
    pending: List[int] = []
    while pair.server.local_flow_control_window(stream_id) >= 1005:
        pair.server.send_data(stream_id, frame(b"x" * 1000))
        pending.extend(credits(pair.to_client()))
        pair.to_server()
    # Nothing consumed: the server's window stays shut.
    assert pair.server.local_flow_control_window(stream_id) < 1005
    queued = [pair.client.consumed(stream_id, credit) for credit in pending]
    assert any(queued)
    pair.to_server()
    assert pair.server.local_flow_control_window(stream_id) > 16_000


def test_messages_in_a_row_come_as_one_event_per_call_in_order() -> None:
    # One event per run of a call's messages in the received bytes (what
    # saves routing each message on its own), never reordering across calls.
    pair = Pair()
    a, b = pair.call(), pair.call()
    pair.headers(a)
    pair.headers(b)
    pair.to_client()
    for stream_id, payload in [(a, b"a1"), (a, b"a2"), (b, b"b1"), (b, b"b2"), (a, b"a3")]:
        pair.server.send_data(stream_id, frame(payload))
    events = of(pair.to_client(), MessagesReceived)
    assert [(e.stream_id, e.messages) for e in events] == [
        (a, [b"a1", b"a2"]),
        (b, [b"b1", b"b2"]),
        (a, [b"a3"]),
    ]
    assert all(len(e.credits) == len(e.messages) for e in events)
    assert credits(events) == [len(frame(b"a1"))] * 5


def test_window_updates_are_batched() -> None:
    pair = Pair()
    stream_id = pair.call()
    pair.headers(stream_id)
    for _ in range(100):
        pair.server.send_data(stream_id, frame(b"y" * 100))
    events = pair.to_client()
    assert len(messages(events)) == 100
    assert not any(pair.client.consumed(stream_id, credit) for credit in credits(events))
    assert pair.client.data_to_send() == b""


def test_an_unread_call_does_not_stall_the_others() -> None:
    # Connection credit goes back on arrival: the stream window alone holds
    # back a call whose messages nobody takes.
    pair = Pair(stream_window=65_535, connection_window=65_535)
    first = pair.call()
    pair.headers(first)
    while pair.server.local_flow_control_window(first) >= 1005:
        pair.server.send_data(first, frame(b"x" * 1000))
        assert messages(pair.to_client())
        pair.to_server()
    second = pair.call()
    # (less the last quarter-window batch of credit, not yet sent)
    assert pair.server.local_flow_control_window(second) > 65_535 * 3 // 4


def test_message_over_max_fails_the_call_and_resets_the_stream() -> None:
    pair = Pair(max_receive_message_length=1000)
    stream_id = pair.call()
    pair.headers(stream_id)
    # The call fails on the 5-byte prefix, before the payload is buffered; the
    # payload already in flight is dropped (its credit given back).
    pair.server.send_data(stream_id, frame(b"z" * 1001)[:5])
    pair.server.send_data(stream_id, b"z" * 1001)
    end = ended(pair.to_client())
    assert end.status is Status.RESOURCE_EXHAUSTED
    resets = of(pair.to_server(), h2.events.StreamReset)
    assert resets[0].error_code == ErrorCodes.CANCEL


def test_message_at_max_is_accepted() -> None:
    pair = Pair(max_receive_message_length=1000)
    stream_id = pair.call()
    pair.headers(stream_id)
    pair.server.send_data(stream_id, frame(b"z" * 1000))
    assert messages(pair.to_client()) == [b"z" * 1000]


def test_compressed_message_without_encoding_is_internal() -> None:
    pair = Pair()
    stream_id = pair.call()
    pair.headers(stream_id)
    pair.server.send_data(stream_id, frame(b"abc", flag=1))
    assert ended(pair.to_client()).status is Status.INTERNAL


def test_stream_ending_mid_message_is_internal() -> None:
    pair = Pair()
    stream_id = pair.call()
    pair.headers(stream_id)
    pair.server.send_data(stream_id, frame(b"abcdef")[:7])
    pair.trailers(stream_id)
    assert ended(pair.to_client()).status is Status.INTERNAL


# -- status --------------------------------------------------------------------


def test_ok_trailers_end_the_call_with_metadata() -> None:
    pair = Pair()
    stream_id = pair.call()
    pair.headers(stream_id, [(b"x-initial", b"1")])
    pair.server.send_data(stream_id, frame(b"r"))
    pair.trailers(stream_id, extra=[(b"x-trailer-bin", b"AAE")])
    events = pair.to_client()
    assert of(events, ResponseHeaders)[0].metadata == (("x-initial", "1"),)
    end = ended(events)
    assert (end.status, end.message) == (Status.OK, "")
    assert end.trailers == (("x-trailer-bin", b"\x00\x01"),)
    assert pair.client.active_calls == 0


def test_error_status_and_percent_encoded_message_from_trailers() -> None:
    pair = Pair()
    stream_id = pair.call()
    pair.headers(stream_id)
    pair.trailers(stream_id, 5, encode_grpc_message("nöt found: 100%").encode())
    end = ended(pair.to_client())
    assert (end.status, end.message) == (Status.NOT_FOUND, "nöt found: 100%")


def test_trailers_only_response() -> None:
    pair = Pair()
    stream_id = pair.call()
    pair.server.send_headers(
        stream_id,
        [*OK_HEADERS, (b"grpc-status", b"7"), (b"grpc-message", b"denied"), (b"x-why", b"policy")],
        end_stream=True,
    )
    events = pair.to_client()
    assert of(events, ResponseHeaders) == []
    end = ended(events)
    assert (end.status, end.message) == (Status.PERMISSION_DENIED, "denied")
    assert end.trailers == (("x-why", "policy"),)


def test_missing_grpc_status_is_unknown() -> None:
    pair = Pair()
    stream_id = pair.call()
    pair.headers(stream_id)
    pair.server.send_headers(stream_id, [(b"x-other", b"1")], end_stream=True)
    assert ended(pair.to_client()).status is Status.UNKNOWN


def test_out_of_range_grpc_status_is_unknown() -> None:
    pair = Pair()
    stream_id = pair.call()
    pair.headers(stream_id)
    pair.trailers(stream_id, 99)
    assert ended(pair.to_client()).status is Status.UNKNOWN


@pytest.mark.parametrize(
    ("http_status", "status"),
    [
        (b"400", Status.INTERNAL),
        (b"401", Status.UNAUTHENTICATED),
        (b"403", Status.PERMISSION_DENIED),
        (b"404", Status.UNIMPLEMENTED),
        (b"429", Status.UNAVAILABLE),
        (b"502", Status.UNAVAILABLE),
        (b"503", Status.UNAVAILABLE),
        (b"504", Status.UNAVAILABLE),
        (b"500", Status.UNKNOWN),
    ],
)
def test_http_status_maps_to_grpc_status(http_status: bytes, status: Status) -> None:
    pair = Pair()
    stream_id = pair.call()
    pair.server.send_headers(
        stream_id,
        [(b":status", http_status), (b"content-type", b"text/html")],
        end_stream=True,
    )
    end = ended(pair.to_client())
    assert end.status is status
    assert http_status.decode() in end.message


def test_non_grpc_content_type_is_unknown() -> None:
    pair = Pair()
    stream_id = pair.call()
    pair.server.send_headers(stream_id, [(b":status", b"200"), (b"content-type", b"text/plain")])
    pair.server.send_data(stream_id, b"hello", end_stream=True)
    assert ended(pair.to_client()).status is Status.UNKNOWN


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (ErrorCodes.REFUSED_STREAM, Status.UNAVAILABLE),
        (ErrorCodes.CANCEL, Status.CANCELLED),
        (ErrorCodes.ENHANCE_YOUR_CALM, Status.RESOURCE_EXHAUSTED),
        (ErrorCodes.INADEQUATE_SECURITY, Status.PERMISSION_DENIED),
        (ErrorCodes.INTERNAL_ERROR, Status.INTERNAL),
        (ErrorCodes.NO_ERROR, Status.INTERNAL),
    ],
)
def test_rst_stream_maps_to_status(code: ErrorCodes, status: Status) -> None:
    pair = Pair()
    stream_id = pair.call()
    pair.server.reset_stream(stream_id, code)
    end = ended(pair.to_client())
    assert end.status is status
    assert code.name in end.message


def test_reset_after_trailers_is_ignored() -> None:
    pair = Pair()
    stream_id = pair.call()  # the client has not half-closed
    pair.headers(stream_id)
    pair.trailers(stream_id)
    assert ended(pair.to_client()).status is Status.OK
    # The client resets with NO_ERROR, as grpc-go does, to free the stream.
    (reset,) = of(pair.to_server(), h2.events.StreamReset)
    assert reset.error_code == ErrorCodes.NO_ERROR


# -- sending -------------------------------------------------------------------


def test_send_respects_flow_control_and_frame_size() -> None:
    pair = Pair()
    stream_id = pair.call()
    data = frame(b"q" * 100_000)
    sent = pair.client.send_data(stream_id, data, end_stream=True)
    assert sent == 65_535  # the server's default window
    received = b"".join(e.data for e in pair.to_server() if isinstance(e, h2.events.DataReceived))
    assert len(received) == sent
    assert pair.client.send_window(stream_id) == 0
    pair.server.acknowledge_received_data(sent, stream_id)
    assert of(pair.to_client(), type(pair.to_client()).__class__) == []
    sent2 = pair.client.send_data(stream_id, memoryview(data)[sent:], end_stream=True)
    assert sent + sent2 == len(data)
    events = pair.to_server()
    assert any(isinstance(e, h2.events.StreamEnded) for e in events)


def test_many_small_messages_fill_exactly_the_window() -> None:
    # Small messages on an open stream take a fast path that writes DATA
    # frames without h2; the server's h2 is the judge of the bytes and windows.
    pair = Pair()
    stream_id = pair.call()
    message = frame(b"p" * 995)
    sent = 0
    while True:
        n = pair.client.send_data(stream_id, message)
        sent += n
        if n < len(message):
            break
    assert sent == 65_535
    received = [e for e in pair.to_server() if isinstance(e, h2.events.DataReceived)]
    assert b"".join(e.data for e in received) == (message * 66)[:65_535]
    pair.server.acknowledge_received_data(
        sum(e.flow_controlled_length for e in received), stream_id
    )
    pair.to_client()
    assert pair.client.send_window(stream_id) == 65_535
    pair.client.end_stream(stream_id)
    assert isinstance(pair.to_server()[-1], h2.events.StreamEnded)


def test_end_stream_half_closes() -> None:
    pair = Pair()
    stream_id = pair.call()
    pair.client.send_data(stream_id, frame(b"one"))
    pair.client.end_stream(stream_id)
    events = pair.to_server()
    data = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    assert data == frame(b"one")
    assert isinstance(events[-1], h2.events.StreamEnded)


def test_cancel_sends_rst_stream_cancel() -> None:
    pair = Pair()
    stream_id = pair.call()
    assert pair.client.cancel(stream_id)
    (reset,) = pair.to_server()
    assert isinstance(reset, h2.events.StreamReset)
    assert reset.error_code == ErrorCodes.CANCEL
    assert not pair.client.cancel(stream_id)


# -- connection ----------------------------------------------------------------


def test_goaway_lets_lower_streams_finish_and_fails_higher_ones() -> None:
    pair = Pair()
    first, second = pair.call(), pair.call()
    # grpc-go's graceful shutdown: a first GOAWAY with a high last stream id
    # (and a PING), then the real one.
    pair.server.close_connection(last_stream_id=2**31 - 1)
    events = pair.to_client()
    assert of(events, GoAwayReceived)[0].last_stream_id == 2**31 - 1
    assert pair.client.draining
    assert not pair.client.can_start_call
    assert of(events, CallEnded) == []
    # h2 refuses to emit a second GOAWAY; write the frame by hand.
    goaway = (
        (8).to_bytes(3, "big")
        + b"\x07\x00"
        + b"\x00\x00\x00\x00"
        + first.to_bytes(4, "big")
        + b"\x00\x00\x00\x00"
    )
    events = pair.to_client(goaway)
    assert ended(events).stream_id == second
    assert ended(events).status is Status.UNAVAILABLE
    # The first call still completes: the connection is not CLOSED for us.
    rest = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding=None)
    )
    del rest  # (the server object itself is CLOSED after sending GOAWAY)
    pair.server.state_machine.state = h2.connection.ConnectionState.SERVER_OPEN
    pair.headers(first)
    pair.server.send_data(first, frame(b"late"))
    pair.trailers(first)
    events = pair.to_client()
    assert messages(events) == [b"late"]
    assert ended(events).status is Status.OK


def test_protocol_error_ends_every_call() -> None:
    pair = Pair()
    first, second = pair.call(), pair.call()
    events = pair.to_client(b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00")
    assert sorted(e.stream_id for e in of(events, CallEnded)) == [first, second]
    assert all(e.status is Status.UNAVAILABLE for e in of(events, CallEnded))
    assert of(events, ConnectionClosed)
    assert pair.client.closed
    assert b"\x07" in pair.client.data_to_send()[:9]  # a GOAWAY frame


def test_respects_max_concurrent_streams() -> None:
    pair = Pair()
    pair.server.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 2})
    pair.to_client()
    pair.to_server()
    first = pair.call()
    pair.call()
    assert not pair.client.can_start_call
    pair.client.cancel(first)
    assert pair.client.can_start_call


# -- encodings -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0000001, "100n"),
        (0.05, "50000000n"),
        (0.1, "100000u"),
        (1.5, "1500000u"),
        (99.999999, "99999999u"),
        (100, "100000m"),
        (3600, "3600000m"),
        (100_000, "100000S"),
        (100_000_000, "1666667M"),
        (10**10, "2777778H"),
        (0, "1n"),
        (-1, "1n"),
        (10**20, "99999999H"),
    ],
)
def test_grpc_timeout_format(seconds: float, text: str) -> None:
    assert encode_grpc_timeout(seconds) == text


@given(st.floats(min_value=1e-9, max_value=3e11))
def test_grpc_timeout_never_shorter_and_at_most_8_digits(seconds: float) -> None:
    text = encode_grpc_timeout(seconds)
    value, unit = int(text[:-1]), text[-1]
    assert len(text) - 1 <= 8
    per_second = {"n": 1e9, "u": 1e6, "m": 1e3, "S": 1, "M": 1 / 60, "H": 1 / 3600}
    assert value / per_second[unit] >= seconds * (1 - 1e-12)


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"AAH+/xA", b"\x00\x01\xfe\xff\x10"),
        (b"AAH+/xA=", b"\x00\x01\xfe\xff\x10"),
        (b"AAH-_xA", b"\x00\x01\xfe\xff\x10"),
        (b"YWJj,ZGVm", b"abcdef"),
        (b"YQ==, Yg", b"ab"),
        (b"", b""),
        (b"!!not base64!!", b"!!not base64!!"),
    ],
)
def test_bin_value_decoding(raw: bytes, value: bytes) -> None:
    assert decode_bin_value(raw) == value


@given(st.binary(max_size=64))
def test_bin_metadata_round_trip(value: bytes) -> None:
    ((key, encoded),) = encode_metadata([("k-bin", value)])
    assert b"=" not in encoded
    assert decode_metadata([(key, encoded)]) == (("k-bin", value),)
    assert base64.b64decode(encoded + b"=" * (-len(encoded) % 4)) == value


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"plain", "plain"),
        (b"n%C3%B6t%20found", "nöt found"),
        (b"100%25", "100%"),
        (b"bad %zz escape %", "bad %zz escape %"),
        (b"truncated %C3", "truncated \ufffd"),
        (b"%FF%FE", "\ufffd\ufffd"),
        (b"str %41", "str A"),
    ],
)
def test_grpc_message_decoding_never_fails(raw: bytes, text: str) -> None:
    assert decode_grpc_message(raw) == text


@given(st.text())
def test_grpc_message_round_trip(text: str) -> None:
    encoded = encode_grpc_message(text)
    assert encoded.isascii()
    expected = text.encode("utf-8", "replace").decode("utf-8", "replace")
    assert decode_grpc_message(encoded.encode()) == expected


@given(st.binary())
def test_grpc_message_decoding_accepts_any_bytes(raw: bytes) -> None:
    assert isinstance(decode_grpc_message(raw), str)


@pytest.mark.parametrize(
    "metadata",
    [
        [("Bad Key", "v")],
        [("grpc-status", "0")],
        [(":path", "/x")],
        [("te", "x")],
        [("x-k", "line\nbreak")],
        [("x-k", "nön-ascii")],
    ],
)
def test_bad_metadata_is_rejected(metadata: List[Tuple[str, Any]]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        encode_metadata(metadata)


def test_metadata_value_types_are_checked() -> None:
    with pytest.raises(TypeError):
        encode_metadata([("x-bin", "text")])
    with pytest.raises(TypeError):
        encode_metadata([("x-k", b"bytes")])


def test_metadata_keys_are_lowercased() -> None:
    assert encode_metadata([("X-Key", "v")]) == [(b"x-key", b"v")]


# -- DATA before the response headers (issue 10 item 15) ------------------------------


def test_data_before_the_response_headers_is_delivered_in_order() -> None:
    # grpc-go writes a message before the response headers when a handler sends
    # from two goroutines at once (Liftbridge's PublishAsync: an ack and a
    # refusal); the flaky client test saw exactly that. Here the frames arrive
    # in that order in one read, then the call goes on as usual.
    pair = Pair()
    stream_id = pair.call()
    early = h2_frame(0x0, 0, stream_id, frame(b"ack"))
    pair.headers(stream_id)
    pair.server.send_data(stream_id, frame(b"refused"))
    events = pair.to_client(early + pair.server.data_to_send())
    assert messages(events) == [b"ack", b"refused"]
    assert len(of(events, ResponseHeaders)) == 1
    assert not of(events, CallEnded)
    pair.trailers(stream_id)
    assert ended(pair.to_client()).status is Status.OK


def test_data_before_the_response_headers_in_separate_reads() -> None:
    pair = Pair()
    stream_id = pair.call()
    events = pair.to_client(h2_frame(0x0, 0, stream_id, frame(b"ack")))
    assert messages(events) == [b"ack"]
    pair.headers(stream_id)
    pair.server.send_data(stream_id, frame(b"next"))
    pair.trailers(stream_id)
    events = pair.to_client()
    assert messages(events) == [b"next"]
    assert ended(events).status is Status.OK


# -- HPACK block caches -----------------------------------------------------------------


HEADER_LISTS = st.lists(
    st.lists(
        st.tuples(
            st.sampled_from([b"grpc-status", b"grpc-message", b"x-a", b"x-b", b":status"]),
            st.sampled_from([b"0", b"1", b"200", b"ok", b"", b"v" * 300]),
        ),
        min_size=1,
        max_size=4,
    ),
    min_size=1,
    max_size=30,
)


@given(HEADER_LISTS, st.lists(st.sampled_from([None, 0, 64, 4096]), max_size=30))
@settings(max_examples=200, deadline=None)
def test_cached_decoding_matches_hpack_as_the_table_changes(
    header_lists: List[List[Tuple[bytes, bytes]]], resizes: List[Any]
) -> None:
    # The decoder caches blocks that leave the table alone, deciding that from
    # the block's bytes; it must always agree with a plain hpack decoder.
    import hpack

    from lbwire.grpc._hpack import HeaderDecoder

    encoder = hpack.Encoder()
    cached = HeaderDecoder(65536)
    plain = hpack.Decoder()
    for i, headers in enumerate(header_lists * 2):  # again: now mostly indexed
        if i < len(resizes) and resizes[i] is not None:
            encoder.header_table_size = resizes[i]
        block = encoder.encode(headers)
        assert cached.decode(block)[0] == plain.decode(block, raw=True)
