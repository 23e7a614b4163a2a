"""Streams of the core: each call's state, its messages and its end.

The base of :class:`~lbwire.grpc.protocol.ClientProtocol` (with
:class:`~lbwire.grpc._inbound.Inbound` between them): one object, split into
modules by size only. The state rules are at the top of
:mod:`lbwire.grpc.protocol`.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from h2.errors import ErrorCodes

from . import _frames
from ._frames import DEFAULT_FRAME_SIZE, DEFAULT_WINDOW
from ._hpack import HeaderDecoder
from .events import CallEnded, Event, MessagesReceived
from .metadata import decode_grpc_message, decode_metadata, not_grpc
from .status import Status, status_from_int

__all__ = ["Stream", "Streams"]

# SETTINGS_MAX_CONCURRENT_STREAMS until the server says otherwise (RFC 9113
# 6.5.2: no limit).
_UNLIMITED = 2**32


class Stream:
    """What the protocol knows about one call's stream (open or half-closed)."""

    __slots__ = (
        "buffer",
        "data_frame_header",
        "headers",
        "local_closed",
        "partial_credit",
        "receive_window",
        "send_window",
        "stream_id",
        "trailers",
        "unacked",
        "wanted",
    )

    def __init__(self, stream_id: int, send_window: int, receive_window: int) -> None:
        self.stream_id = stream_id
        # A DATA frame header after its 3-byte length: type, no flags, stream.
        self.data_frame_header = b"\x00\x00" + stream_id.to_bytes(4, "big")
        # Bytes of an incomplete message (prefix included); None when the
        # next DATA frame starts at a message boundary.
        self.buffer: Optional[bytearray] = None
        self.headers: Optional[List[Tuple[bytes, bytes]]] = None
        self.trailers: Optional[List[Tuple[bytes, bytes]]] = None
        self.local_closed = False
        self.send_window = send_window
        # What the peer may still send on this stream, as it sees it.
        self.receive_window = receive_window
        # Consumed bytes not yet returned to the peer in a stream WINDOW_UPDATE.
        self.unacked = 0
        # Credit of the frames of the message in progress (see the module
        # docstring), and whether the application waits for a message.
        self.partial_credit = 0
        self.wanted = False


class Streams:
    """The connection's state; the streams' messages, credit and ends.

    Args:
        decoder: the connection's HPACK decoder.
        max_message: ``max_receive_message_length``.
        stream_window: the inbound flow-control window of each stream.
        connection_window: the inbound flow-control window of the connection.

    """

    def __init__(
        self,
        *,
        decoder: HeaderDecoder,
        max_message: int,
        stream_window: int,
        connection_window: int,
    ) -> None:
        self._decoder = decoder
        self._out = bytearray()
        self._stream_window = stream_window
        self._connection_window = connection_window
        self._stream_threshold = stream_window // 4
        self._connection_threshold = connection_window // 4
        # Connection-level windows: what we may send, what the peer may send.
        self._send_window = DEFAULT_WINDOW
        self._receive_window = DEFAULT_WINDOW
        self._connection_unacked = 0
        self._max_message = max_message
        self._streams: Dict[int, Stream] = {}
        self._next_stream_id = 1
        # The peer's settings that calls need.
        self._max_streams = _UNLIMITED
        self._initial_window = DEFAULT_WINDOW
        self._max_outbound_frame = DEFAULT_FRAME_SIZE
        # Bytes of an incomplete frame, kept until the rest arrives.
        self._inbound = bytearray()
        # A header block still expecting CONTINUATION frames:
        # [stream id, END_STREAM flag, fragments so far, frame count].
        self._header_block: Optional[List[Any]] = None
        #: True once the peer sent GOAWAY or the connection failed: no new calls.
        self.draining = False
        #: True once the connection failed for good.
        self.closed = False
        #: True once the server's first SETTINGS frame (its preface) arrived.
        self.answered = False

    def _settings_received(self, values: Dict[int, int]) -> None:
        """Apply the server's settings (the subclass applies the table size)."""
        raise NotImplementedError

    def cancel(self, stream_id: int, error_code: int = ErrorCodes.CANCEL) -> bool:
        """Reset a call's stream (RST_STREAM, CANCEL by default) and forget it.

        Returns whether the call was still in progress.
        """
        if self._streams.pop(stream_id, None) is None:
            return False
        if not self.closed:
            self._out += _frames.rst_stream(stream_id, error_code)
        return True

    def consumed(self, stream_id: int, credit: int) -> bool:
        """The application took a message: return its credit to the peer.

        Credit is returned in batches (a quarter of the window at a time).
        Returns whether a WINDOW_UPDATE was queued (then flush
        :meth:`data_to_send`). Credit of a call that ended is ignored.
        """
        stream = self._streams.get(stream_id)
        if stream is None or self.closed:
            return False
        unacked = stream.unacked + credit
        if unacked < self._stream_threshold:
            stream.unacked = unacked
            return False
        self._out += _frames.window_update(stream_id, unacked)
        stream.receive_window += unacked
        stream.unacked = 0
        return True

    def want_message(self, stream_id: int) -> bool:
        """The application waits for the call's next message (it has taken all before).

        Until a message completes, its frames are credited as they arrive,
        and so is what arrived of it already: a message larger than the
        stream window completes. Returns whether a WINDOW_UPDATE was queued.
        """
        stream = self._streams.get(stream_id)
        if stream is None or stream.wanted:
            return False
        stream.wanted = True
        credit = stream.partial_credit
        if not credit:
            return False
        stream.partial_credit = 0
        return self.consumed(stream_id, credit)

    def _connection_credit(self, credit: int) -> None:
        """DATA arrived: the connection's credit goes back at once (batched)."""
        unacked = self._connection_unacked + credit
        if unacked >= self._connection_threshold:
            self._out += _frames.window_update(0, unacked)
            self._receive_window += unacked
            unacked = 0
        self._connection_unacked = unacked

    # -- state reports (for tests and diagnostics) -------------------------------

    @property
    def call_ids(self) -> List[int]:
        """The stream ids of the calls in progress."""
        return list(self._streams)

    def message_buffer_size(self, stream_id: int) -> int:
        """Bytes of a call's message in progress (0 if none, or the call ended)."""
        stream = self._streams.get(stream_id)
        return 0 if stream is None or stream.buffer is None else len(stream.buffer)

    def stream_credit(self, stream_id: int) -> int:
        """A call's inbound credit: its window plus credit held back or not yet returned.

        No credit of the call has leaked while this, plus the credit of its
        messages the application holds, is the configured stream window.
        """
        stream = self._streams.get(stream_id)
        if stream is None:
            return 0
        return stream.receive_window + stream.unacked + stream.partial_credit

    @property
    def incomplete_frame_size(self) -> int:
        """Bytes of a frame received in part, kept until the rest arrives."""
        return len(self._inbound)

    @property
    def incomplete_header_block_size(self) -> int:
        """Bytes of a header block still waiting for CONTINUATION frames."""
        block = self._header_block
        return 0 if block is None else int(block[3])

    def fail_all(self, status: Status, message: str) -> List[CallEnded]:
        """End every call in progress with ``status`` (the connection is gone)."""
        self.closed = True
        self.draining = True
        self._header_block = None
        ended = [CallEnded(sid, status, message) for sid in self._streams]
        self._streams.clear()
        return ended

    # -- messages and call ends ------------------------------------------------

    def _data(self, stream: Stream, data: bytes, credit: int, out: List[Event]) -> None:
        if stream.buffer is None:
            size = len(data)
            if (
                size >= 5
                and data[0] == 0
                and int.from_bytes(data[1:5], "big") == size - 5
                and size - 5 <= self._max_message
            ):
                credit += stream.partial_credit
                stream.partial_credit = 0
                stream.wanted = False
                message_received(stream.stream_id, data[5:], credit, out)
                return
            stream.buffer = bytearray(data)
        else:
            stream.buffer += data
        self._reassemble(stream, credit, out)

    def _reassemble(self, stream: Stream, credit: int, out: List[Event]) -> None:
        buffer = stream.buffer
        assert buffer is not None
        view = memoryview(buffer)
        offset = 0
        end = len(buffer)
        completed = False
        try:
            while end - offset >= 5:
                if buffer[offset] != 0:
                    self._stream_error(
                        stream,
                        ErrorCodes.CANCEL,
                        "compressed message received but no compression was negotiated",
                        out,
                    )
                    return
                size = int.from_bytes(buffer[offset + 1 : offset + 5], "big")
                if size > self._max_message:
                    self._stream_error(
                        stream,
                        ErrorCodes.CANCEL,
                        f"received message larger than max ({size} > {self._max_message})",
                        out,
                        Status.RESOURCE_EXHAUSTED,
                    )
                    return
                if end - offset - 5 < size:
                    break
                message = bytes(view[offset + 5 : offset + 5 + size])
                offset += 5 + size
                # The credit of the message's earlier frames and of this one
                # goes with the first message the frame completes (the rest of
                # the frame rides along with it).
                if completed:
                    message_received(stream.stream_id, message, 0, out)
                else:
                    message_received(stream.stream_id, message, stream.partial_credit + credit, out)
                    stream.partial_credit = 0
                    stream.wanted = False
                    completed = True
        finally:
            view.release()
        if offset == end:
            stream.buffer = None
        elif offset:
            del buffer[:offset]
        if not completed:
            # Part of a message: its credit waits for the message, unless the
            # application waits for it (see the module docstring).
            if stream.wanted:
                self.consumed(stream.stream_id, credit)
            else:
                stream.partial_credit += credit

    def _stream_error(
        self,
        stream: Stream,
        error_code: int,
        message: str,
        out: List[Event],
        status: Status = Status.INTERNAL,
    ) -> None:
        """The peer got this call wrong: reset its stream and end it."""
        self.cancel(stream.stream_id, error_code)
        stream.buffer = None
        out.append(CallEnded(stream.stream_id, status, message))

    def _stream_ended(self, stream: Stream, out: List[Event]) -> None:
        """The server ended the stream (END_STREAM): the call is over."""
        stream_id = stream.stream_id
        del self._streams[stream_id]
        if not stream.local_closed and not self.closed:
            # The server finished before we half-closed: tell it we are done
            # sending too, as grpc-go does, so the stream is freed on both ends.
            self._out += _frames.rst_stream(stream_id, ErrorCodes.NO_ERROR)
        out.append(self._call_status(stream))

    def _call_status(self, stream: Stream) -> CallEnded:
        stream_id = stream.stream_id
        headers = stream.headers
        if headers is None:
            return CallEnded(stream_id, Status.INTERNAL, "stream ended without response headers")
        failure = not_grpc(headers)
        if failure is not None:
            return CallEnded(stream_id, failure[0], failure[1])
        # Trailers-Only: the status is in the (only) HEADERS frame.
        trailers = headers if stream.trailers is None else stream.trailers
        status_value = None
        message = ""
        for name, value in trailers:
            if name == b"grpc-status":
                status_value = value
            elif name == b"grpc-message":
                message = decode_grpc_message(value)
        if status_value is None:
            return CallEnded(
                stream_id, Status.UNKNOWN, "missing grpc-status", decode_metadata(trailers)
            )
        if 0 < len(status_value) <= 3 and status_value.isdigit():
            status = status_from_int(int(status_value))
        else:
            status = Status.UNKNOWN
            message = message or f"malformed grpc-status {status_value[:20]!r}"
        if status is Status.OK and stream.buffer:
            return CallEnded(stream_id, Status.INTERNAL, "stream ended in the middle of a message")
        return CallEnded(stream_id, status, message, decode_metadata(trailers))


def message_received(stream_id: int, data: bytes, credit: int, out: List[Event]) -> None:
    """Report a complete message: with the messages just before it, if they are the call's."""
    last = out[-1] if out else None
    if isinstance(last, MessagesReceived) and last.stream_id == stream_id:
        last.messages.append(data)
        last.credits.append(credit)
    else:
        out.append(MessagesReceived(stream_id, [data], [credit]))
