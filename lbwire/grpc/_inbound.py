"""The receiving half of :class:`~lbwire.grpc.protocol.ClientProtocol`: frames in, events out.

Split from :mod:`lbwire.grpc.protocol` by size only: :class:`Inbound` holds the
connection's state and the frame handlers, ``ClientProtocol`` (its only
subclass) adds the calls' actions. The state rules are at the top of
:mod:`lbwire.grpc.protocol`.
"""

from __future__ import annotations

import struct
from typing import List, Union

from h2.errors import ErrorCodes

from . import _frames
from ._frames import (
    ACK,
    CONTINUATION,
    DATA,
    DEFAULT_FRAME_SIZE,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    MAX_WINDOW,
    PADDED,
    PING,
    PRIORITY,
    PRIORITY_FLAG,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    HTTP2ConnectionError,
)
from ._hpack import HPACKError, OversizedHeaderList
from ._stream import Streams, message_received
from .events import (
    SETTINGS_CHANGED,
    WINDOW_OPENED,
    CallEnded,
    ConnectionClosed,
    Event,
    GoAwayReceived,
    PingAcknowledged,
    ResponseHeaders,
)
from .metadata import decode_metadata, is_informational, not_grpc
from .status import Status, status_from_h2_error_code

__all__ = ["MAX_HEADER_BLOCK_SIZE", "MAX_HEADER_LIST_SIZE", "Inbound"]

#: The largest header block (compressed, or its header list decoded) the
#: protocol processes; a larger one ends the connection, since the HPACK
#: state can only be kept by decoding the whole block. Blocks above the
#: advertised SETTINGSMAX_HEADER_LIST_SIZE but below this fail just their call.
MAX_HEADER_BLOCK_SIZE = 1024 * 1024
#: Our SETTINGSMAX_HEADER_LIST_SIZE.
MAX_HEADER_LIST_SIZE = 65_536
# CONTINUATION frames of one header block: 1 MiB in 16 KiB frames is 64.
_MAX_HEADER_FRAMES = 128
# Our SETTINGS_MAX_FRAME_SIZE (the default: we never announce another).
_MAX_INBOUND_FRAME = DEFAULT_FRAME_SIZE
# A frame header: the length in two parts (8 and 16 bits), type, flags, stream id.
_FRAME_HEADER = struct.Struct(">BHBBL").unpack_from
# A gRPC message's prefix: the compressed flag, the length.
_MESSAGE_PREFIX = struct.Struct(">BL").unpack_from


class Inbound(Streams):
    """The handling of received frames: bytes in, events out."""

    # -- receiving ----------------------------------------------------------

    def receive_data(self, data: bytes) -> List[Event]:
        """Feed bytes received from the peer; return the resulting events.

        After this, :meth:`data_to_send` may hold answers (PING and SETTINGS
        acknowledgements, resets, WINDOW_UPDATEs): send them. A protocol
        violation by one call's stream ends that call (INTERNAL, or
        RESOURCE_EXHAUSTED for oversized headers); one that breaks the
        connection ends every call with UNAVAILABLE and yields
        :class:`ConnectionClosed`, and the queued GOAWAY should then be sent
        and the connection closed. Bytes received after that are ignored.
        """
        out: List[Event] = []
        if self.closed:
            return out
        try:
            if not self.answered:
                self._check_server_preface(data)
            tail = self._inbound
            # Frames are read from the bytes themselves when they can be:
            # slicing bytes is cheaper than slicing a memoryview.
            view: Union[bytes, memoryview] = data if type(data) is bytes else memoryview(data)
            if tail:
                view = memoryview(data)
                # Complete the frame left over from the last read with just the
                # bytes it needs: a large transfer is not copied wholesale.
                if len(tail) < 9:
                    take = 9 - len(tail)
                    tail += view[:take]
                    view = view[take:]
                    if len(tail) < 9:
                        return out
                frame_size = 9 + self._frame_length(tail)
                need = frame_size - len(tail)
                tail += view[:need]
                view = view[need:]
                if len(tail) < frame_size:
                    return out
                self._inbound = bytearray()
                self._receive_frames(bytes(tail), out)
            used = self._receive_frames(view, out)
            if used < len(view):
                self._inbound = bytearray(view[used:])
        except HTTP2ConnectionError as exc:
            self._connection_failed(exc.error_code, exc.message, out, preface=exc.preface)
        return out

    def _check_server_preface(self, data: bytes) -> None:
        """Fail at once if the peer's first bytes are not an HTTP/2 server preface.

        RFC 9113 3.4: the server's first frame is SETTINGS. A server that
        speaks HTTP/1.1 answers the client preface with a status line, whose
        bytes would otherwise be read as a frame header of absurd length.
        """
        head = bytes(self._inbound[:9]) + data[:9]
        if head[:4] == b"HTTP"[: len(head)] and head:
            line = (bytes(self._inbound) + data).split(b"\r\n", 1)[0][:80]
            raise HTTP2ConnectionError(
                ErrorCodes.PROTOCOL_ERROR,
                f"not an HTTP/2 (gRPC) server: it answered {line.decode('latin-1')!r}",
                preface=True,
            )
        if len(head) >= 9 and (head[3] != SETTINGS or head[4] & ACK or any(head[5:9])):
            raise HTTP2ConnectionError(
                ErrorCodes.PROTOCOL_ERROR,
                "not an HTTP/2 (gRPC) server: its first frame was not SETTINGS",
                preface=True,
            )

    def _frame_length(self, header: Union[bytes, bytearray, memoryview]) -> int:
        length = int.from_bytes(header[:3], "big")
        if length > _MAX_INBOUND_FRAME:
            raise HTTP2ConnectionError(
                ErrorCodes.FRAME_SIZE_ERROR,
                f"frame of {length} bytes exceeds SETTINGS_MAX_FRAME_SIZE",
            )
        return length

    def _connection_failed(
        self, error_code: int, message: str, out: List[Event], *, preface: bool = False
    ) -> None:
        self._out += _frames.goaway(0, error_code, message.encode("utf-8", "replace")[:256])
        reason = message if preface else f"HTTP/2 protocol error: {message}"
        out.extend(self.fail_all(Status.UNAVAILABLE, reason))
        out.append(ConnectionClosed(reason))

    def _receive_frames(self, buffer: Union[bytes, memoryview], out: List[Event]) -> int:
        """Handle the complete frames at the start of ``buffer``; return their length."""
        end = len(buffer)
        position = 0
        max_frame = _MAX_INBOUND_FRAME
        header = _FRAME_HEADER
        while end - position >= 9:
            high, low, frame_type, flags, stream_id = header(buffer, position)
            length = high << 16 | low
            if length > max_frame:
                self._frame_length(buffer[position : position + 3])
            start = position + 9
            frame_end = start + length
            if frame_end > end:
                break
            stream_id &= 0x7FFF_FFFF
            position = frame_end
            if self._header_block is not None and frame_type != CONTINUATION:
                raise HTTP2ConnectionError(
                    ErrorCodes.PROTOCOL_ERROR, "header block interrupted by another frame"
                )
            if frame_type == DATA:
                self._on_data(buffer, start, frame_end, flags, stream_id, out)
            elif frame_type == HEADERS:
                self._on_headers(buffer, start, frame_end, flags, stream_id, out)
            elif frame_type == WINDOW_UPDATE:
                self._on_window_update(buffer, start, length, stream_id, out)
            elif frame_type == PING:
                if length != 8 or stream_id:
                    raise HTTP2ConnectionError(
                        ErrorCodes.FRAME_SIZE_ERROR if length != 8 else ErrorCodes.PROTOCOL_ERROR,
                        "malformed PING frame",
                    )
                if flags & ACK:
                    out.append(PingAcknowledged(bytes(buffer[start:frame_end])))
                else:
                    self._out += _frames.PING_ACK_HEADER
                    self._out += buffer[start:frame_end]
            elif frame_type == RST_STREAM:
                self._on_rst_stream(buffer, start, length, stream_id, out)
            elif frame_type == CONTINUATION:
                self._on_continuation(buffer, start, frame_end, flags, stream_id, out)
            elif frame_type == SETTINGS:
                self._on_settings(buffer, start, frame_end, flags, stream_id, out)
            elif frame_type == GOAWAY:
                self._on_goaway(buffer, start, frame_end, stream_id, out)
            elif frame_type == PRIORITY:
                if not stream_id:
                    raise HTTP2ConnectionError(ErrorCodes.PROTOCOL_ERROR, "PRIORITY on stream 0")
                stream = self._streams.get(stream_id)
                if length != 5 and stream is not None:
                    self._stream_error(
                        stream, ErrorCodes.FRAME_SIZE_ERROR, "malformed PRIORITY frame", out
                    )
            elif frame_type == PUSH_PROMISE:
                raise HTTP2ConnectionError(
                    ErrorCodes.PROTOCOL_ERROR, "PUSH_PROMISE received, push is disabled"
                )
            # Frames of unknown types are ignored (RFC 9113 5.5).
        return position

    def _is_idle(self, stream_id: int) -> bool:
        """Whether ``stream_id`` names a stream we never opened."""
        return stream_id & 1 == 0 or stream_id >= self._next_stream_id

    def _unknown_stream(self, stream_id: int, what: str) -> None:
        """A frame for a stream not in progress: ignored, unless never opened."""
        if stream_id == 0 or self._is_idle(stream_id):
            raise HTTP2ConnectionError(
                ErrorCodes.PROTOCOL_ERROR, f"{what} on stream {stream_id}, which was never opened"
            )
        # A call we already ended (reset, or its response was complete):
        # frames in flight are expected and dropped.

    def _on_data(
        self,
        buffer: Union[bytes, memoryview],
        start: int,
        end: int,
        flags: int,
        stream_id: int,
        out: List[Event],
    ) -> None:
        length = end - start
        window = self._receive_window - length
        if window < 0:
            raise HTTP2ConnectionError(
                ErrorCodes.FLOW_CONTROL_ERROR, "DATA beyond the connection window"
            )
        self._receive_window = window
        stream = self._streams.get(stream_id)
        if stream is None:
            self._unknown_stream(stream_id, "DATA")
            self._connection_credit(length)
            return
        self._connection_credit(length)
        if flags & PADDED:
            if length == 0 or buffer[start] >= length:
                raise HTTP2ConnectionError(ErrorCodes.PROTOCOL_ERROR, "DATA padding too long")
            end -= buffer[start]
            start += 1
        stream.receive_window -= length
        if stream.receive_window < 0:
            self._stream_error(
                stream, ErrorCodes.FLOW_CONTROL_ERROR, "DATA beyond the stream window", out
            )
            return
        # (DATA may come before the response headers: a grpc-go server whose
        # handler sends from two goroutines at once, as Liftbridge's
        # PublishAsync does with acks and errors, can queue a message before
        # the headers its first send is still writing. grpc-go's client takes
        # the message, and the HEADERS that follow as the response headers;
        # so does this core.)
        size = end - start
        if (
            stream.buffer is None
            and size >= 5
            and _MESSAGE_PREFIX(buffer, start) == (0, size - 5)
            and size - 5 <= self._max_message
        ):
            # One frame, one message (Liftbridge sends every streamed message
            # in its own frame): the payload's only copy.
            credit = stream.partial_credit + length
            stream.partial_credit = 0
            stream.wanted = False
            message_received(stream_id, bytes(buffer[start + 5 : end]), credit, out)
        elif size or length:
            self._data(stream, bytes(buffer[start:end]), length, out)
        if flags & END_STREAM and stream_id in self._streams:
            self._stream_ended(stream, out)

    def _on_headers(
        self,
        buffer: Union[bytes, memoryview],
        start: int,
        end: int,
        flags: int,
        stream_id: int,
        out: List[Event],
    ) -> None:
        if not stream_id:
            raise HTTP2ConnectionError(ErrorCodes.PROTOCOL_ERROR, "HEADERS on stream 0")
        if flags & PADDED:
            if end == start or buffer[start] >= end - start:
                raise HTTP2ConnectionError(ErrorCodes.PROTOCOL_ERROR, "HEADERS padding too long")
            end -= buffer[start]
            start += 1
        if flags & PRIORITY_FLAG:
            start += 5
            if start > end:
                raise HTTP2ConnectionError(ErrorCodes.FRAME_SIZE_ERROR, "HEADERS frame too short")
        fragment = bytes(buffer[start:end])
        if flags & END_HEADERS:
            self._header_block_complete(stream_id, fragment, flags & END_STREAM, out)
        else:
            self._header_block = [stream_id, flags & END_STREAM, [fragment], len(fragment)]

    def _on_continuation(
        self,
        buffer: Union[bytes, memoryview],
        start: int,
        end: int,
        flags: int,
        stream_id: int,
        out: List[Event],
    ) -> None:
        pending = self._header_block
        if pending is None or pending[0] != stream_id:
            raise HTTP2ConnectionError(ErrorCodes.PROTOCOL_ERROR, "unexpected CONTINUATION frame")
        fragments: List[bytes] = pending[2]
        fragments.append(bytes(buffer[start:end]))
        pending[3] += end - start
        if pending[3] > MAX_HEADER_BLOCK_SIZE or len(fragments) > _MAX_HEADER_FRAMES:
            raise HTTP2ConnectionError(
                ErrorCodes.ENHANCE_YOUR_CALM,
                f"header block larger than {MAX_HEADER_BLOCK_SIZE} bytes "
                f"or {_MAX_HEADER_FRAMES} frames",
            )
        if flags & END_HEADERS:
            self._header_block = None
            self._header_block_complete(stream_id, b"".join(fragments), pending[1], out)

    def _header_block_complete(
        self, stream_id: int, block: bytes, end_stream: int, out: List[Event]
    ) -> None:
        # Decoded even for calls already ended: the decoder's dynamic table
        # must follow the server's encoder.
        try:
            headers, size = self._decoder.decode(block)
        except OversizedHeaderList:
            raise HTTP2ConnectionError(
                ErrorCodes.ENHANCE_YOUR_CALM,
                f"header list larger than {MAX_HEADER_BLOCK_SIZE} bytes",
            ) from None
        except HPACKError as exc:
            raise HTTP2ConnectionError(
                ErrorCodes.COMPRESSION_ERROR, f"invalid HPACK header block: {exc}"
            ) from None
        stream = self._streams.get(stream_id)
        if stream is None:
            self._unknown_stream(stream_id, "HEADERS")
            return
        if size > MAX_HEADER_LIST_SIZE:
            self._stream_error(
                stream,
                ErrorCodes.CANCEL,
                f"response header list of {size} bytes exceeds {MAX_HEADER_LIST_SIZE}",
                out,
                Status.RESOURCE_EXHAUSTED,
            )
            return
        if stream.headers is None:
            if not end_stream and headers[:1] and is_informational(headers[0]):
                return  # an informational (1xx) response: the real one follows
            stream.headers = headers
            if end_stream:  # Trailers-Only: the status is in these headers
                self._stream_ended(stream, out)
                return
            failure = not_grpc(headers)
            if failure is not None:
                # Not a gRPC response (a proxy's error page, say): end the call
                # now and stop the body.
                self.cancel(stream_id)
                out.append(CallEnded(stream_id, failure[0], failure[1]))
                return
            out.append(ResponseHeaders(stream_id, decode_metadata(headers)))
        elif not end_stream:
            self._stream_error(
                stream, ErrorCodes.PROTOCOL_ERROR, "trailers without END_STREAM", out
            )
        else:
            stream.trailers = headers
            self._stream_ended(stream, out)

    def _on_rst_stream(
        self,
        buffer: Union[bytes, memoryview],
        start: int,
        length: int,
        stream_id: int,
        out: List[Event],
    ) -> None:
        if length != 4:
            raise HTTP2ConnectionError(ErrorCodes.FRAME_SIZE_ERROR, "malformed RST_STREAM frame")
        if self._streams.pop(stream_id, None) is None:
            self._unknown_stream(stream_id, "RST_STREAM")
            return
        code = int.from_bytes(buffer[start : start + 4], "big")
        try:
            name = ErrorCodes(code).name
        except ValueError:
            name = str(code)
        out.append(
            CallEnded(
                stream_id,
                status_from_h2_error_code(code),
                f"stream reset by server ({name})",
                not_processed=code == ErrorCodes.REFUSED_STREAM,
                reset=True,
            )
        )

    def _on_window_update(
        self,
        buffer: Union[bytes, memoryview],
        start: int,
        length: int,
        stream_id: int,
        out: List[Event],
    ) -> None:
        if length != 4:
            raise HTTP2ConnectionError(ErrorCodes.FRAME_SIZE_ERROR, "malformed WINDOW_UPDATE frame")
        increment = int.from_bytes(buffer[start : start + 4], "big") & 0x7FFF_FFFF
        if stream_id == 0:
            if increment == 0:
                raise HTTP2ConnectionError(ErrorCodes.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > MAX_WINDOW:
                raise HTTP2ConnectionError(
                    ErrorCodes.FLOW_CONTROL_ERROR, "connection window above 2**31-1"
                )
        else:
            stream = self._streams.get(stream_id)
            if stream is None:
                self._unknown_stream(stream_id, "WINDOW_UPDATE")
                return
            if increment == 0:
                self._stream_error(stream, ErrorCodes.PROTOCOL_ERROR, "WINDOW_UPDATE of 0", out)
                return
            stream.send_window += increment
            if stream.send_window > MAX_WINDOW:
                self._stream_error(
                    stream, ErrorCodes.FLOW_CONTROL_ERROR, "stream window above 2**31-1", out
                )
                return
        if not out or out[-1] is not WINDOW_OPENED:
            out.append(WINDOW_OPENED)

    def _on_settings(
        self,
        buffer: Union[bytes, memoryview],
        start: int,
        end: int,
        flags: int,
        stream_id: int,
        out: List[Event],
    ) -> None:
        if stream_id:
            raise HTTP2ConnectionError(ErrorCodes.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            if end != start:
                raise HTTP2ConnectionError(ErrorCodes.FRAME_SIZE_ERROR, "SETTINGS ACK with data")
            return  # (our settings apply from the start: nothing waits for this)
        values = _frames.parse_settings(bytes(buffer[start:end]))
        self.answered = True
        self._max_streams = values.get(_frames.MAX_CONCURRENT_STREAMS, self._max_streams)
        self._max_outbound_frame = values.get(_frames.MAX_FRAME_SIZE, self._max_outbound_frame)
        window = values.get(_frames.INITIAL_WINDOW_SIZE)
        if window is not None:
            # RFC 9113 6.9.2: the change applies to every open stream's window.
            delta = window - self._initial_window
            self._initial_window = window
            for stream in self._streams.values():
                stream.send_window += delta
                if stream.send_window > MAX_WINDOW:
                    raise HTTP2ConnectionError(
                        ErrorCodes.FLOW_CONTROL_ERROR,
                        "SETTINGS_INITIAL_WINDOW_SIZE overflows a stream window",
                    )
        self._settings_received(values)
        self._out += _frames.SETTINGS_ACK
        out.append(SETTINGS_CHANGED)

    def _on_goaway(
        self,
        buffer: Union[bytes, memoryview],
        start: int,
        end: int,
        stream_id: int,
        out: List[Event],
    ) -> None:
        if stream_id:
            raise HTTP2ConnectionError(ErrorCodes.PROTOCOL_ERROR, "GOAWAY on a stream")
        if end - start < 8:
            raise HTTP2ConnectionError(ErrorCodes.FRAME_SIZE_ERROR, "GOAWAY frame too short")
        # Unlike h2, the connection stays up: grpc-go's graceful shutdown sends
        # GOAWAY(max id) then GOAWAY(last id), and calls up to it may finish.
        self.draining = True
        last = int.from_bytes(buffer[start : start + 4], "big") & 0x7FFF_FFFF
        code = int.from_bytes(buffer[start + 4 : start + 8], "big")
        for sid in [sid for sid in self._streams if sid > last]:
            del self._streams[sid]
            out.append(
                CallEnded(
                    sid,
                    Status.UNAVAILABLE,
                    "connection going away; call was not processed",
                    not_processed=True,
                )
            )
        out.append(GoAwayReceived(code, last, bytes(buffer[start + 8 : end])))
