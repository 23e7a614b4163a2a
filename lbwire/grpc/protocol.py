"""Sans-IO gRPC-over-HTTP/2 client core.

:class:`ClientProtocol` is the client side of one HTTP/2 connection. Bytes
received from the network go in through :meth:`ClientProtocol.receive_data`
and come out as gRPC-level events per call (:mod:`lbwire.grpc.events`);
gRPC call actions (:meth:`~ClientProtocol.start_call`,
:meth:`~ClientProtocol.send_data`, :meth:`~ClientProtocol.cancel`, ...) put
frames into a buffer drained with :meth:`~ClientProtocol.data_to_send`.
Nothing here does I/O or knows about an event loop, so the whole gRPC wire
behaviour is testable with plain bytes.

**Who owns HTTP/2: this core, all of it.** The whole connection's state is
here: the preface, both sides' SETTINGS, every stream's state, both
directions' flow-control windows, GOAWAY, PING, and HPACK (:mod:`._hpack`).
h2 is not used (its ``ErrorCodes`` enum aside). Why not h2:
a gRPC client needs little of HTTP/2 (no server side, no push, no priority, a
stream is open, half-closed or gone), while h2's generic machinery (frame
objects, two state machines, an event per frame) made up most of the cost of
a call, and h2 ends the whole connection at the first GOAWAY (h2 issue 1181)
where grpc-go's graceful shutdown (two GOAWAYs) needs the calls below the
last stream id to finish. Half of each, as before, meant overriding h2's
private methods and swapping its decoder; one owner means none of that.

**State rules.** One :class:`ClientProtocol` per connection owns:

* the streams (``_streams``: stream id to :class:`~._stream.Stream`). A
  stream is added by :meth:`~ClientProtocol.start_call` and removed exactly
  once, when its call ends: by the server (END_STREAM, RST_STREAM, a GOAWAY
  below its id), by the application (:meth:`~ClientProtocol.cancel`), by a
  stream error of the peer's (reset), or with the connection
  (:meth:`~ClientProtocol.fail_all`). A :class:`~.events.CallEnded` event
  reports every removal the application did not ask for. Frames of removed
  streams are dropped; frames of streams never opened end the connection.
* the windows. Outbound (what we may send): the connection's and each
  stream's, lowered only by :meth:`~ClientProtocol.send_data`, raised only by
  the peer's WINDOW_UPDATE and SETTINGS_INITIAL_WINDOW_SIZE. Inbound (what the
  peer may send): lowered by received DATA, raised only when credit is
  returned (see *Flow control*).
* the HPACK contexts: the encoder is used only by
  :meth:`~ClientProtocol.start_call`; the decoder decodes every header block
  received, in order, the blocks of streams already removed included, or it
  would go out of step with the server's encoder.
* the connection's state: ``answered`` (the server's SETTINGS came),
  ``draining`` (no new calls: GOAWAY received or sent, stream ids used up),
  ``closed`` (failed for good: nothing more is sent or processed).

Only this class changes that state, through its public methods; the I/O
layer (:mod:`lbwire.grpc._connection`) calls them and routes the events.

**Flow control.** Inbound, the stream windows hold back a call that is not
read; the connection window only bounds the bytes in flight, so that one call
nobody reads never stalls the others (grpc-go does the same). Every DATA
frame's flow-controlled length is *credit*:

* at the connection level it is returned on arrival;
* at the stream level, the credit of all the frames of a message travels with
  the message (:attr:`MessagesReceived.credits`) and is returned by
  :meth:`ClientProtocol.consumed` once the application has taken it. So a call
  never holds more than its stream window of received data, complete messages
  and the message in progress together, however large its messages;
* except while the application waits for a call's next message
  (:meth:`ClientProtocol.want_message`): then the frames of the message in
  progress are credited on arrival, so that a message larger than the window
  completes. That message is bounded by ``max_receive_message_length``.

Credit is batched: a WINDOW_UPDATE is emitted once a quarter of a window has
been returned, not per frame.

**Hostile peers.** A frame or header block the peer got wrong fails only its
call when HTTP/2 allows that (the call ends with INTERNAL or
RESOURCE_EXHAUSTED and the stream is reset); anything that leaves the
connection's state uncertain (framing, HPACK, flow control of the connection)
ends every call with UNAVAILABLE and queues a GOAWAY. A peer whose first bytes
are not an HTTP/2 server's preface is named as such. Every buffer is bounded:
a frame by SETTINGS_MAX_FRAME_SIZE, a header block by
:data:`MAX_HEADER_BLOCK_SIZE`, a message by ``max_receive_message_length``, the
unconsumed messages of a call by its stream window.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

from . import _frames
from ._frames import DEFAULT_WINDOW, MAX_STREAM_ID, MAX_WINDOW
from ._hpack import HeaderDecoder, HeaderEncoder
from ._inbound import MAX_HEADER_BLOCK_SIZE, MAX_HEADER_LIST_SIZE, Inbound
from ._stream import Stream
from .events import (
    CallEnded,
    ConnectionClosed,
    Event,
    GoAwayReceived,
    MessagesReceived,
    PingAcknowledged,
    ResponseHeaders,
    SettingsChanged,
    WindowOpened,
)
from .metadata import (
    decode_bin_value,
    decode_grpc_message,
    decode_metadata,
    encode_grpc_message,
    encode_grpc_timeout,
    encode_metadata,
)

__all__ = [
    "MAX_HEADER_BLOCK_SIZE",
    "CallEnded",
    "ClientProtocol",
    "ConnectionClosed",
    "Event",
    "GoAwayReceived",
    "MessagesReceived",
    "NoCapacityError",
    "PingAcknowledged",
    "ResponseHeaders",
    "SettingsChanged",
    "WindowOpened",
    "decode_bin_value",
    "decode_grpc_message",
    "decode_metadata",
    "encode_grpc_message",
    "encode_grpc_timeout",
    "encode_metadata",
]

# grpc-timeout as a literal never indexed with a literal name, no Huffman
# coding (RFC 7541 6.2.3): a new value per call would churn the dynamic table.
_TIMEOUT_FIELD = b"\x10\x0cgrpc-timeout"


# The largest HPACK table our encoder uses (the default of RFC 7541).
_ENCODER_TABLE_SIZE = 4096


class NoCapacityError(RuntimeError):
    """:meth:`ClientProtocol.start_call` was called when no call can start."""


class ClientProtocol(Inbound):
    """The client side of one gRPC-over-HTTP/2 connection, without I/O.

    Receiving (:meth:`receive_data` and the frame handlers) is written in
    :class:`~._inbound.Inbound`; this class adds the calls' actions. Both
    halves are one object with one set of state (see the module docstring).

    Args:
        authority: the ``:authority`` of every request (``host:port``).
        scheme: ``"http"`` or ``"https"``.
        user_agent: the ``user-agent`` header.
        max_receive_message_length: larger inbound messages end their call with
            RESOURCE_EXHAUSTED (and reset the stream) before being buffered.
        stream_window: the inbound flow-control window of each stream.
        connection_window: the inbound flow-control window of the connection.

    """

    def __init__(
        self,
        *,
        authority: str,
        scheme: str = "http",
        user_agent: str = "lbwire",
        max_receive_message_length: int = 4 * 1024 * 1024,
        stream_window: int = 4 * 1024 * 1024,
        connection_window: int = 16 * 1024 * 1024,
    ) -> None:
        if not DEFAULT_WINDOW <= stream_window <= MAX_WINDOW:
            raise ValueError("stream_window out of range")
        if not DEFAULT_WINDOW <= connection_window <= MAX_WINDOW:
            raise ValueError("connection_window out of range")
        super().__init__(
            decoder=HeaderDecoder(MAX_HEADER_BLOCK_SIZE),
            max_message=max_receive_message_length,
            stream_window=stream_window,
            connection_window=connection_window,
        )
        self._encoder = HeaderEncoder()
        self._scheme = scheme.encode("ascii")
        self._suffix = [
            (b":authority", authority.encode("ascii")),
            (b"te", b"trailers"),
            (b"content-type", b"application/grpc"),
            (b"user-agent", user_agent.encode("ascii")),
        ]
        #: PINGs queued by :meth:`ping` (keepalive), for tests and diagnostics.
        self.pings_sent = 0

    def _settings_received(self, values: Dict[int, int]) -> None:
        size = values.get(_frames.HEADER_TABLE_SIZE)
        if size is not None:
            # Any size up to the server's limit will do; HPACK's default is
            # plenty for a client's request headers.
            self._encoder.set_table_size(min(size, _ENCODER_TABLE_SIZE))

    # -- connection ---------------------------------------------------------

    def initiate(self) -> None:
        """Queue the connection preface, our SETTINGS and the connection window."""
        self._out += _frames.CLIENT_PREFACE
        self._out += _frames.settings(
            {
                _frames.ENABLE_PUSH: 0,
                _frames.INITIAL_WINDOW_SIZE: self._stream_window,
                _frames.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_SIZE,
            }
        )
        if self._connection_window > DEFAULT_WINDOW:
            self._out += _frames.window_update(0, self._connection_window - DEFAULT_WINDOW)
            self._receive_window = self._connection_window

    def data_to_send(self) -> bytes:
        """Return (and forget) the bytes queued for the peer."""
        data = bytes(self._out)
        self._out.clear()
        return data

    @property
    def has_data_to_send(self) -> bool:
        """Whether bytes are queued for the peer (cheaper than data_to_send)."""
        return bool(self._out)

    @property
    def active_calls(self) -> int:
        """The number of calls (streams) in progress."""
        return len(self._streams)

    @property
    def inbound_window(self) -> int:
        """How many bytes of DATA the peer may still send on the connection."""
        return self._receive_window

    @property
    def unacknowledged_credit(self) -> int:
        """Connection credit not yet sent in a WINDOW_UPDATE (they are batched).

        No credit has leaked while ``inbound_window + unacknowledged_credit``
        is the configured connection window.
        """
        return self._connection_unacked

    def receive_window(self, stream_id: int) -> int:
        """How many bytes of DATA the peer may still send on a call (0 if it ended)."""
        stream = self._streams.get(stream_id)
        return 0 if stream is None else stream.receive_window

    @property
    def max_concurrent_calls(self) -> int:
        """The peer's SETTINGS_MAX_CONCURRENT_STREAMS."""
        return self._max_streams

    @property
    def can_start_call(self) -> bool:
        """Whether :meth:`start_call` may open another stream right now."""
        return not self.draining and len(self._streams) < self._max_streams

    def ping(self, data: bytes) -> None:
        """Queue a PING carrying 8 bytes of ``data``."""
        if len(data) != 8:
            raise ValueError("PING data must be 8 bytes")
        self._out += _frames.PING_HEADER + data
        self.pings_sent += 1

    def close(self, error_code: int = 0) -> None:
        """Queue a GOAWAY; every call still in progress ends with UNAVAILABLE."""
        if self.closed:
            return
        self._out += _frames.goaway(0, error_code)
        self.closed = True
        self.draining = True

    # -- calls --------------------------------------------------------------

    def start_call(
        self,
        path: str,
        *,
        timeout: Optional[float] = None,
        metadata: Sequence[Tuple[bytes, bytes]] = (),
    ) -> int:
        """Queue the request headers of a new call and return its stream id.

        ``metadata`` is already encoded (see :func:`encode_metadata`).

        Raises:
            NoCapacityError: no call can start now; check
                :attr:`can_start_call` first.

        """
        if not self.can_start_call:
            raise NoCapacityError(
                "the connection is closing" if self.draining else "max concurrent streams reached"
            )
        stream_id = self._next_stream_id
        self._next_stream_id = stream_id + 2
        if self._next_stream_id > MAX_STREAM_ID:
            self.draining = True  # stream ids used up: the next call needs a new connection
        block = self._request_head(path)
        if timeout is not None:
            value = encode_grpc_timeout(timeout).encode("ascii")
            block += _TIMEOUT_FIELD + bytes((len(value),)) + value
        if metadata:
            block += self._encode_changing_table(list(metadata))
        self._send_header_block(stream_id, block)
        self._streams[stream_id] = Stream(stream_id, self._initial_window, self._stream_window)
        return stream_id

    def _request_head(self, path: str) -> bytes:
        """The encoded constant request headers of calls to ``path``."""
        headers = [
            (b":method", b"POST"),
            (b":scheme", self._scheme),
            (b":path", path.encode("ascii")),
            *self._suffix,
        ]
        return self._encoder.encode_cached((headers[2][1],), headers)

    def _encode_changing_table(self, headers: List[Tuple[bytes, bytes]]) -> bytes:
        return self._encoder.encode(headers)

    def _send_header_block(self, stream_id: int, block: bytes) -> None:
        """Queue HEADERS (and CONTINUATION frames if the block needs them)."""
        out = self._out
        sid = stream_id.to_bytes(4, "big")
        size = self._max_outbound_frame
        if len(block) <= size:
            out += len(block).to_bytes(3, "big") + b"\x01\x04" + sid + block
            return
        view = memoryview(block)
        frame_type = b"\x01"
        for start in range(0, len(block), size):
            chunk = view[start : start + size]
            last = start + size >= len(block)
            out += len(chunk).to_bytes(3, "big") + frame_type
            out += (b"\x04" if last else b"\x00") + sid
            out += chunk
            frame_type = b"\x09"

    def send_window(self, stream_id: int) -> int:
        """How many bytes of DATA the stream may send now (flow control)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_closed:
            return 0
        return max(0, min(self._send_window, stream.send_window))

    def send_data(
        self, stream_id: int, data: Union[bytes, memoryview], end_stream: bool = False
    ) -> int:
        """Queue as much of ``data`` as flow control allows; return how much.

        ``end_stream`` half-closes the stream once all of ``data`` is queued.
        If the stream is no longer open for sending (the server ended or reset
        the call), everything is reported as sent and dropped: the call's end
        arrives as a :class:`CallEnded` event.
        """
        total = len(data)
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_closed or self.closed:
            return total
        window = min(self._send_window, stream.send_window)
        size = self._max_outbound_frame
        out = self._out
        if total <= window and total <= size:
            # The common case: one frame.
            out += total.to_bytes(3, "big")
            if end_stream:
                out += b"\x00\x01" + stream.data_frame_header[2:]
                stream.local_closed = True
            else:
                out += stream.data_frame_header
            out += data
            self._send_window -= total
            stream.send_window -= total
            return total
        view = memoryview(data)
        sent = 0
        while sent < total and window > 0:
            n = min(total - sent, window, size)
            last = end_stream and sent + n == total
            out += n.to_bytes(3, "big")
            out += b"\x00\x01" + stream.data_frame_header[2:] if last else stream.data_frame_header
            out += view[sent : sent + n]
            sent += n
            window -= n
        self._send_window -= sent
        stream.send_window -= sent
        if end_stream and sent == total:
            if total == 0:  # an empty END_STREAM frame needs no window
                out += b"\x00\x00\x00\x00\x01" + stream.data_frame_header[2:]
            stream.local_closed = True
        return sent

    def end_stream(self, stream_id: int) -> None:
        """Half-close a call: queue an empty DATA frame with END_STREAM."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_closed or self.closed:
            return
        stream.local_closed = True
        self._out += b"\x00\x00\x00\x00\x01" + stream.data_frame_header[2:]
