"""Sans-IO gRPC-over-HTTP/2 client core.

:class:`ClientProtocol` is the client side of one HTTP/2 connection. Bytes
received from the network go in through :meth:`ClientProtocol.receive_data`
and come out as gRPC-level events per call (:class:`ResponseHeaders`,
:class:`MessageReceived`, :class:`CallEnded`, ...); gRPC call actions
(:meth:`~ClientProtocol.start_call`, :meth:`~ClientProtocol.send_data`,
:meth:`~ClientProtocol.cancel`, ...) put frames into a buffer drained with
:meth:`~ClientProtocol.data_to_send`. Nothing here does I/O or knows about an
event loop, so the whole gRPC wire behaviour is testable with plain bytes.

**Who does what.** h2 runs the connection: the preface, SETTINGS (and their
acknowledgement), GOAWAY. The frames of calls (streams) are handled here: the
stream state of a gRPC call is simple (open, half-closed, gone), and h2's
generic machinery (frame objects, two state machines, an event per frame,
eager ``repr`` logging) made up most of the cost of a unary call in this
core. PING and WINDOW_UPDATE are handled here too: grpc-go servers send a
BDP PING and a WINDOW_UPDATE with nearly every response. Measured on the
project's 2-core VM, a unary call's frames fed as grpc-go sends them
(WINDOW_UPDATE, PING, HEADERS, DATA, trailers): 100 us through h2, 14 us
here. HPACK is hpack's, through h2's encoder and decoder objects, so their
dynamic tables stay those h2 knows. Every header block is decoded, the
blocks of calls already forgotten included, or the decoder's table would go
out of step with the server's.

**Flow control.** Inbound, the stream windows hold back a call that is not
read; the connection window only bounds the bytes in flight, so that one call
nobody reads never stalls the others (grpc-go does the same). Every DATA
frame's flow-controlled length is *credit*:

* at the connection level it is returned on arrival;
* at the stream level, the credit of all the frames of a message travels with
  the message (:attr:`MessageReceived.credit`) and is returned by
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
ends every call with UNAVAILABLE and queues a GOAWAY. Every buffer is bounded:
a frame by SETTINGS_MAX_FRAME_SIZE, a header block by
:data:`MAX_HEADER_BLOCK_SIZE`, a message by ``max_receive_message_length``, the
unconsumed messages of a call by its stream window.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import math
import re
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
    cast,
)
from urllib.parse import quote, unquote_to_bytes

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack.exceptions
from h2.errors import ErrorCodes
from hpack import Decoder as _HpackDecoder
from hpack import Encoder as _HpackEncoder
from hyperframe.frame import Frame, GoAwayFrame

from .status import (
    Metadata,
    MetadataValue,
    Status,
    status_from_h2_error_code,
    status_from_http_status,
    status_from_int,
)

__all__ = [
    "MAX_HEADER_BLOCK_SIZE",
    "CallEnded",
    "ClientProtocol",
    "ConnectionClosed",
    "Event",
    "GoAwayReceived",
    "MessageReceived",
    "PingAcknowledged",
    "ResponseHeaders",
    "SettingsChanged",
    "WindowOpened",
    "decode_grpc_message",
    "decode_metadata",
    "encode_grpc_message",
    "encode_grpc_timeout",
    "encode_metadata",
]

MetadataLike = Iterable[Tuple[str, MetadataValue]]


# --------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------


class Event:
    """Base class of the events :meth:`ClientProtocol.receive_data` returns."""

    __slots__ = ()

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for cls in type(self).__mro__
            for name in getattr(cls, "__slots__", ())
        )
        return f"{type(self).__name__}({fields})"


class ResponseHeaders(Event):
    """The server sent the response headers (initial metadata) of a call."""

    __slots__ = ("metadata", "stream_id")

    def __init__(self, stream_id: int, metadata: Metadata) -> None:
        self.stream_id = stream_id
        self.metadata = metadata


class MessageReceived(Event):
    """One complete gRPC message (without its 5-byte prefix) arrived on a call.

    ``credit`` is the call's flow-control credit to hand back through
    :meth:`ClientProtocol.consumed` once the message has been consumed (if
    the call ended meanwhile, there is nothing to give back).
    """

    __slots__ = ("credit", "data", "stream_id")

    def __init__(self, stream_id: int, data: bytes, credit: int) -> None:
        self.stream_id = stream_id
        self.data = data
        self.credit = credit


class CallEnded(Event):
    """A call is over: the server sent its status, reset it, or it failed.

    The protocol has forgotten the stream when this is emitted.
    """

    __slots__ = ("message", "not_processed", "status", "stream_id", "trailers")

    def __init__(
        self,
        stream_id: int,
        status: Status,
        message: str,
        trailers: Metadata = (),
        not_processed: bool = False,
    ) -> None:
        self.stream_id = stream_id
        self.status = status
        self.message = message
        self.trailers = trailers
        #: The server never began the call (its stream was beyond a GOAWAY's
        #: last stream id, or refused with REFUSED_STREAM): safe to send again.
        self.not_processed = not_processed


class WindowOpened(Event):
    """The peer opened an outbound flow-control window: blocked senders may go on."""

    __slots__ = ()


class SettingsChanged(Event):
    """The peer changed its settings (stream concurrency, windows, frame size)."""

    __slots__ = ()


class PingAcknowledged(Event):
    """The peer answered one of our PINGs."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class GoAwayReceived(Event):
    """The peer sent GOAWAY: no new calls; calls up to ``last_stream_id`` may finish.

    Calls above ``last_stream_id`` were never processed; they end (before this
    event) with UNAVAILABLE.
    """

    __slots__ = ("debug_data", "error_code", "last_stream_id")

    def __init__(self, error_code: int, last_stream_id: int, debug_data: bytes) -> None:
        self.error_code = error_code
        self.last_stream_id = last_stream_id
        self.debug_data = debug_data


class ConnectionClosed(Event):
    """The connection is unusable (protocol error); every call has ended."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


_WINDOW_OPENED = WindowOpened()
_SETTINGS_CHANGED = SettingsChanged()


# --------------------------------------------------------------------------
# Header and metadata encodings (grpc doc/PROTOCOL-HTTP2.md)
# --------------------------------------------------------------------------

_TIMEOUT_UNITS = (
    ("n", 1e9),
    ("u", 1e6),
    ("m", 1e3),
    ("S", 1.0),
    ("M", 1 / 60),
    ("H", 1 / 3600),
)
_TIMEOUT_MAX = 99_999_999  # TimeoutValue is at most 8 digits


def encode_grpc_timeout(seconds: float) -> str:
    """Format a timeout as a ``grpc-timeout`` value: at most 8 digits and a unit.

    The finest unit that fits is chosen; the value is rounded up so the server
    never sees a shorter deadline than the client's. Non-positive timeouts
    become ``1n``.
    """
    if seconds <= 0:
        return "1n"
    for unit, per_second in _TIMEOUT_UNITS:
        value = math.ceil(seconds * per_second)
        if value <= _TIMEOUT_MAX:
            return f"{value}{unit}"
    return f"{_TIMEOUT_MAX}H"


# Characters grpc-message sends as-is: printable ASCII except '%'.
_MESSAGE_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if c != 0x25)


def encode_grpc_message(message: str) -> str:
    """Percent-encode a status message as ``grpc-message`` is sent."""
    return quote(message, safe=_MESSAGE_SAFE, encoding="utf-8")


def decode_grpc_message(value: Union[str, bytes]) -> str:
    """Decode a ``grpc-message`` value; never fails.

    Percent-escapes are decoded as UTF-8; malformed escapes are kept literally
    and invalid UTF-8 is replaced with U+FFFD, as the spec asks.
    """
    if not value:
        return ""
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    if b"%" not in value:
        return value.decode("utf-8", "replace")
    return unquote_to_bytes(value).decode("utf-8", "replace")


def decode_bin_value(value: bytes) -> bytes:
    """Decode a received ``-bin`` header value.

    Accepts base64 with or without padding, and values joined with commas
    (several headers of one name folded into one). Undecodable input is
    returned unchanged rather than failing the call.
    """
    try:
        if b"," in value:
            return b"".join(_b64decode(part) for part in value.split(b","))
        return _b64decode(value)
    except (binascii.Error, ValueError):
        return value


def _b64decode(part: bytes) -> bytes:
    part = part.strip().rstrip(b"=")
    # Both alphabets appear in the wild; map URL-safe to standard.
    return base64.b64decode(
        part.replace(b"-", b"+").replace(b"_", b"/") + b"=" * (-len(part) % 4),
        validate=True,
    )


_KEY_RE = re.compile(r"[0-9a-z_.\-]+\Z")
_ASCII_VALUE_RE = re.compile(r"[\x20-\x7e]*\Z")
# Headers the gRPC layer sets itself; users may not send them as metadata.
_RESERVED_KEYS = frozenset(
    {"content-type", "te", "user-agent", "host", "connection", "grpc-timeout"}
)


def encode_metadata(metadata: MetadataLike) -> List[Tuple[bytes, bytes]]:
    """Validate custom metadata and encode it as HTTP/2 header pairs.

    Keys are lower-cased ASCII (``0-9 a-z _ . -``), not reserved (``grpc-*``,
    pseudo-headers, HTTP/2 connection headers). Values of keys ending in
    ``-bin`` are bytes, sent base64-encoded without padding; other values are
    printable-ASCII strings.

    Raises:
        ValueError: a key or value is not allowed.
        TypeError: a value has the wrong type for its key.

    """
    headers = []
    for key, value in metadata:
        key = key.lower()
        if not _KEY_RE.match(key) or key.startswith("grpc-") or key in _RESERVED_KEYS:
            raise ValueError(f"metadata key not allowed: {key!r}")
        if key.endswith("-bin"):
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise TypeError(f"value of binary metadata {key!r} must be bytes")
            encoded = base64.b64encode(value).rstrip(b"=")
        else:
            if not isinstance(value, str):
                raise TypeError(f"value of metadata {key!r} must be str")
            if not _ASCII_VALUE_RE.match(value):
                raise ValueError(f"metadata value of {key!r} is not printable ASCII")
            encoded = value.encode("ascii")
        headers.append((key.encode("ascii"), encoded))
    return headers


# Headers that are part of the protocol, not of the application's metadata.
# (grpc-status-details-bin stays: it is the application's rich error detail.)
_PROTOCOL_HEADERS = frozenset(
    {
        b"content-type",
        b"grpc-status",
        b"grpc-message",
        b"grpc-encoding",
        b"grpc-accept-encoding",
    }
)


def decode_metadata(headers: Iterable[Tuple[bytes, bytes]]) -> Metadata:
    """Turn received header pairs into metadata: ``-bin`` values decoded to bytes.

    Pseudo-headers and the gRPC protocol headers (``grpc-status``,
    ``grpc-message``, ``content-type``, ...) are left out.
    """
    result: List[Tuple[str, MetadataValue]] = []
    for name, value in headers:
        if name[:1] == b":" or name in _PROTOCOL_HEADERS:
            continue
        key = name.decode("ascii", "replace")
        if key.endswith("-bin"):
            result.append((key, decode_bin_value(value)))
        else:
            result.append((key, value.decode("latin-1")))
    return tuple(result)


# --------------------------------------------------------------------------
# HPACK
# --------------------------------------------------------------------------

_HPACK_CACHE_SIZE = 256

#: The largest header block (compressed, or its header list decoded) the
#: protocol processes; a larger one ends the connection, since the HPACK
#: state can only be kept by decoding the whole block. Blocks above the
#: advertised SETTINGS_MAX_HEADER_LIST_SIZE (64 KiB) but below this fail just
#: their call.
MAX_HEADER_BLOCK_SIZE = 1024 * 1024
_MAX_HEADER_LIST_SIZE = 65_536
# CONTINUATION frames of one header block: 1 MiB in 16 KiB frames is 64.
_MAX_HEADER_FRAMES = 128


def _table_state(encoder_or_decoder: Union[_HpackEncoder, _HpackDecoder]) -> object:
    """Something that changes whenever an HPACK dynamic table changes."""
    table = encoder_or_decoder.header_table
    entries = table.dynamic_entries
    return (len(entries), id(entries[0]) if entries else 0, table.maxsize)


class _Decoder(_HpackDecoder):
    """HPACK decoder that remembers blocks which leave the dynamic table alone.

    gRPC servers send byte-identical response headers and OK trailers on every
    call once their fields are indexed; decoding those is most of the cost of
    a HEADERS frame. A cached result is valid until the table changes (which
    clears the cache).
    """

    def __init__(self) -> None:
        super().__init__()
        self._cache: Dict[bytes, Tuple[List[Tuple[bytes, bytes]], int]] = {}

    def decode_sized(self, block: bytes) -> Tuple[List[Tuple[bytes, bytes]], int]:
        """Decode a header block; return the headers and their RFC 9113 list size.

        Raises:
            hpack.exceptions.HPACKError: the block is malformed, or its header
                list is larger than ``max_header_list_size``.

        """
        cache = self._cache
        cached = cache.get(block)
        if cached is not None:
            return cached
        before = _table_state(self)
        headers = cast(List[Tuple[bytes, bytes]], self.decode(block, raw=True))
        size = 0
        for name, value in headers:
            size += len(name) + len(value) + 32
        result = (headers, size)
        if _table_state(self) == before:
            if len(cache) >= _HPACK_CACHE_SIZE:
                cache.clear()
            cache[block] = result
        else:
            cache.clear()
        return result


class _H2Connection(h2.connection.H2Connection):
    """H2Connection that keeps working after a GOAWAY.

    h2 moves the whole connection to CLOSED on the first GOAWAY (h2 issue 1181),
    while a graceful server shutdown (grpc-go sends two GOAWAYs) expects the
    calls up to ``last_stream_id`` to complete. We report the GOAWAY and keep
    the state machine as it was; the protocol opens no new streams.
    """

    def _receive_goaway_frame(
        self, frame: GoAwayFrame
    ) -> Tuple[List[Frame], List[h2.events.Event]]:
        event = h2.events.ConnectionTerminated()
        try:
            event.error_code = ErrorCodes(frame.error_code)
        except ValueError:
            event.error_code = frame.error_code
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]


def _is_informational(header: Tuple[bytes, bytes]) -> bool:
    return header[0] == b":status" and header[1][:1] == b"1"


def _not_grpc(headers: List[Tuple[bytes, bytes]]) -> Optional[Tuple[Status, str]]:
    """Return the failure if response headers are not a gRPC response's, else None."""
    http_status = b""
    content_type = b""
    for name, value in headers:
        if name == b":status":
            http_status = value
        elif name == b"content-type":
            content_type = value
    if http_status != b"200":
        if not (len(http_status) == 3 and http_status.isdigit()):
            return Status.INTERNAL, f"malformed :status header {http_status[:20]!r}"
        code = int(http_status)
        return status_from_http_status(code), f"HTTP status {code}"
    if not content_type.startswith(b"application/grpc"):
        text = content_type[:100].decode("latin-1")
        return Status.UNKNOWN, f"unexpected content-type {text!r}"
    return None


# --------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------

_DATA = 0x0
_HEADERS = 0x1
_PRIORITY = 0x2
_RST_STREAM = 0x3
_SETTINGS = 0x4
_PUSH_PROMISE = 0x5
_PING = 0x6
_GOAWAY = 0x7
_WINDOW_UPDATE = 0x8
_CONTINUATION = 0x9

_END_STREAM = 0x1
_ACK = 0x1
_END_HEADERS = 0x4
_PADDED = 0x8
_PRIORITY_FLAG = 0x20

_DEFAULT_WINDOW = 65_535
_MAX_WINDOW = 2**31 - 1
_MAX_STREAM_ID = 2**31 - 1


class _ConnectionError(Exception):
    """The peer broke HTTP/2 in a way that ends the connection (RFC 9113 5.4.1).

    ``preface``: the peer is no HTTP/2 server at all (the message says so).
    """

    def __init__(self, error_code: ErrorCodes, message: str, *, preface: bool = False) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.preface = preface


def _rst_stream(stream_id: int, error_code: int) -> bytes:
    return b"\x00\x00\x04\x03\x00" + stream_id.to_bytes(4, "big") + error_code.to_bytes(4, "big")


def _window_update(stream_id: int, increment: int) -> bytes:
    return b"\x00\x00\x04\x08\x00" + stream_id.to_bytes(4, "big") + increment.to_bytes(4, "big")


# grpc-timeout as a literal never indexed with a literal name, no Huffman
# coding (RFC 7541 6.2.3): a new value per call would churn the dynamic
# table, and hpack's Huffman coder costs more than the few bytes it saves.
_TIMEOUT_FIELD = b"\x10\x0cgrpc-timeout"


class _Stream:
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


_H2Event = h2.events.Event
_Handler = Callable[[_H2Event, List[Event]], None]


class ClientProtocol:
    """The client side of one gRPC-over-HTTP/2 connection, without I/O.

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
        if not _DEFAULT_WINDOW <= stream_window <= _MAX_WINDOW:
            raise ValueError("stream_window out of range")
        if not _DEFAULT_WINDOW <= connection_window <= _MAX_WINDOW:
            raise ValueError("connection_window out of range")
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
        )
        self._h2 = _H2Connection(config=config)
        self._encoder: _HpackEncoder = self._h2.encoder
        decoder = self._decoder = _Decoder()
        decoder.max_header_list_size = MAX_HEADER_BLOCK_SIZE
        self._h2.decoder = decoder
        self._h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: stream_window,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: _MAX_HEADER_LIST_SIZE,
            },
        )
        self._out = bytearray()
        self._stream_window = stream_window
        self._connection_window = connection_window
        self._stream_threshold = stream_window // 4
        self._connection_threshold = connection_window // 4
        # Connection-level windows: what we may send, what the peer may send.
        self._send_window = _DEFAULT_WINDOW
        self._receive_window = _DEFAULT_WINDOW
        self._connection_unacked = 0
        self._max_message = max_receive_message_length
        self._streams: Dict[int, _Stream] = {}
        self._next_stream_id = 1
        # The peer's settings that calls need, copied from h2's (whose
        # accessors cost a microsecond each).
        self._max_streams: int = self._h2.remote_settings.max_concurrent_streams
        self._initial_window: int = self._h2.remote_settings.initial_window_size
        # Bytes of an incomplete frame, kept until the rest arrives.
        self._inbound = bytearray()
        # A header block still expecting CONTINUATION frames:
        # [stream id, END_STREAM flag, fragments so far, frame count].
        self._header_block: Optional[List[Any]] = None
        # Encoded request headers per path, valid while the encoder's
        # dynamic table is unchanged (see _request_head).
        self._heads: Dict[str, bytes] = {}
        self._heads_state: object = None
        self._scheme = scheme.encode("ascii")
        self._suffix = [
            (b":authority", authority.encode("ascii")),
            (b"te", b"trailers"),
            (b"content-type", b"application/grpc"),
            (b"user-agent", user_agent.encode("ascii")),
        ]
        #: True once the peer sent GOAWAY or the connection failed: no new calls.
        self.draining = False
        #: True once the connection failed for good.
        self.closed = False
        #: True once the server's first SETTINGS frame (its preface) arrived.
        self.answered = False
        self._h2_handlers: Dict[type, _Handler] = {
            h2.events.RemoteSettingsChanged: self._on_settings_changed,  # type: ignore[dict-item]
            h2.events.ConnectionTerminated: self._on_goaway,  # type: ignore[dict-item]
        }

    # -- connection ---------------------------------------------------------

    def initiate(self) -> None:
        """Queue the connection preface, our SETTINGS and the connection window."""
        self._h2.initiate_connection()
        self._out += self._h2.data_to_send()
        if self._connection_window > _DEFAULT_WINDOW:
            self._out += _window_update(0, self._connection_window - _DEFAULT_WINDOW)
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
        self._out += b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + data

    def close(self, error_code: int = 0) -> None:
        """Queue a GOAWAY; every call still in progress ends with UNAVAILABLE."""
        if self.closed:
            return
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._h2.close_connection(error_code)
        self._out += self._h2.data_to_send()
        self.closed = True
        self.draining = True

    def fail_all(self, status: Status, message: str) -> List[CallEnded]:
        """End every call in progress with ``status`` (the connection is gone)."""
        self.closed = True
        self.draining = True
        self._header_block = None
        ended = [CallEnded(sid, status, message) for sid in self._streams]
        self._streams.clear()
        return ended

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
            h2.exceptions.TooManyStreamsError: no call can start now; check
                :attr:`can_start_call` first.

        """
        if not self.can_start_call:
            raise h2.exceptions.TooManyStreamsError(
                "the connection is closing" if self.draining else "max concurrent streams reached"
            )
        stream_id = self._next_stream_id
        self._next_stream_id = stream_id + 2
        if self._next_stream_id > _MAX_STREAM_ID:
            self.draining = True  # stream ids used up: the next call needs a new connection
        block = self._request_head(path)
        if timeout is not None:
            value = encode_grpc_timeout(timeout).encode("ascii")
            block += _TIMEOUT_FIELD + bytes((len(value),)) + value
        if metadata:
            block += self._encode_changing_table(list(metadata))
        self._send_header_block(stream_id, block)
        self._streams[stream_id] = _Stream(stream_id, self._initial_window, self._stream_window)
        return stream_id

    def _request_head(self, path: str) -> bytes:
        """The encoded constant request headers of calls to ``path``.

        After a method's first call its headers are all in the encoder's
        dynamic table, so their encoding is the same bytes until the table
        changes; hpack would re-derive them field by field (~40 us a call).
        Any change to the table drops the cached blocks, so the bytes are
        always what hpack itself would produce.
        """
        encoder = self._encoder
        heads = self._heads
        if encoder.header_table.resized or self._heads_state != _table_state(encoder):
            heads.clear()
        block = heads.get(path)
        if block is None:
            headers = [
                (b":method", b"POST"),
                (b":scheme", self._scheme),
                (b":path", path.encode("ascii")),
                *self._suffix,
            ]
            resized = encoder.header_table.resized
            before = _table_state(encoder)
            block = encoder.encode(headers)
            self._heads_state = _table_state(encoder)
            if self._heads_state == before and not resized:
                if len(heads) >= _HPACK_CACHE_SIZE:
                    heads.clear()
                heads[path] = block
            else:
                heads.clear()
        return block

    def _encode_changing_table(self, headers: List[Tuple[bytes, bytes]]) -> bytes:
        block: bytes = self._encoder.encode(headers)
        if self._heads_state != _table_state(self._encoder):
            self._heads.clear()
        return block

    def _send_header_block(self, stream_id: int, block: bytes) -> None:
        """Queue HEADERS (and CONTINUATION frames if the block needs them)."""
        out = self._out
        sid = stream_id.to_bytes(4, "big")
        size = self._h2.max_outbound_frame_size
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
        size = self._h2.max_outbound_frame_size
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

    def cancel(self, stream_id: int, error_code: int = ErrorCodes.CANCEL) -> bool:
        """Reset a call's stream (RST_STREAM, CANCEL by default) and forget it.

        Returns whether the call was still in progress.
        """
        if self._streams.pop(stream_id, None) is None:
            return False
        if not self.closed:
            self._out += _rst_stream(stream_id, error_code)
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
        self._out += _window_update(stream_id, unacked)
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
            self._out += _window_update(0, unacked)
            self._receive_window += unacked
            unacked = 0
        self._connection_unacked = unacked

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
            view = memoryview(data)
            if tail:
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
        except _ConnectionError as exc:
            self._connection_failed(exc.error_code, exc.message, out, preface=exc.preface)
        except h2.exceptions.ProtocolError as exc:  # h2's own checks (h2 sent GOAWAY)
            self._connection_failed(ErrorCodes.PROTOCOL_ERROR, str(exc), out)
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
            raise _ConnectionError(
                ErrorCodes.PROTOCOL_ERROR,
                f"not an HTTP/2 (gRPC) server: it answered {line.decode('latin-1')!r}",
                preface=True,
            )
        if len(head) >= 9 and (head[3] != _SETTINGS or head[4] & _ACK or any(head[5:9])):
            raise _ConnectionError(
                ErrorCodes.PROTOCOL_ERROR,
                "not an HTTP/2 (gRPC) server: its first frame was not SETTINGS",
                preface=True,
            )

    def _frame_length(self, header: Union[bytes, bytearray, memoryview]) -> int:
        length = int.from_bytes(header[:3], "big")
        if length > self._h2.max_inbound_frame_size:
            raise _ConnectionError(
                ErrorCodes.FRAME_SIZE_ERROR,
                f"frame of {length} bytes exceeds SETTINGS_MAX_FRAME_SIZE",
            )
        return length

    def _connection_failed(
        self, error_code: int, message: str, out: List[Event], *, preface: bool = False
    ) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._h2.close_connection(error_code, message.encode("utf-8", "replace")[:256])
        self._out += self._h2.data_to_send()
        reason = message if preface else f"HTTP/2 protocol error: {message}"
        out.extend(self.fail_all(Status.UNAVAILABLE, reason))
        out.append(ConnectionClosed(reason))

    def _receive_frames(self, buffer: Union[bytes, memoryview], out: List[Event]) -> int:
        """Handle the complete frames at the start of ``buffer``; return their length."""
        end = len(buffer)
        position = 0
        max_frame = self._h2.max_inbound_frame_size
        while end - position >= 9:
            length = int.from_bytes(buffer[position : position + 3], "big")
            if length > max_frame:
                self._frame_length(buffer[position : position + 3])
            start = position + 9
            frame_end = start + length
            if frame_end > end:
                break
            frame_type = buffer[position + 3]
            flags = buffer[position + 4]
            stream_id = int.from_bytes(buffer[position + 5 : start], "big") & 0x7FFF_FFFF
            position = frame_end
            if self._header_block is not None and frame_type != _CONTINUATION:
                raise _ConnectionError(
                    ErrorCodes.PROTOCOL_ERROR, "header block interrupted by another frame"
                )
            if frame_type == _DATA:
                self._on_data(buffer, start, frame_end, flags, stream_id, out)
            elif frame_type == _HEADERS:
                self._on_headers(buffer, start, frame_end, flags, stream_id, out)
            elif frame_type == _WINDOW_UPDATE:
                self._on_window_update(buffer, start, length, stream_id, out)
            elif frame_type == _PING:
                if length != 8 or stream_id:
                    raise _ConnectionError(
                        ErrorCodes.FRAME_SIZE_ERROR if length != 8 else ErrorCodes.PROTOCOL_ERROR,
                        "malformed PING frame",
                    )
                if flags & _ACK:
                    out.append(PingAcknowledged(bytes(buffer[start:frame_end])))
                else:
                    self._out += b"\x00\x00\x08\x06\x01\x00\x00\x00\x00"
                    self._out += buffer[start:frame_end]
            elif frame_type == _RST_STREAM:
                self._on_rst_stream(buffer, start, length, stream_id, out)
            elif frame_type == _CONTINUATION:
                self._on_continuation(buffer, start, frame_end, flags, stream_id, out)
            elif frame_type in (_SETTINGS, _GOAWAY):
                self._h2_receive(bytes(buffer[start - 9 : frame_end]), out)
            elif frame_type == _PRIORITY:
                if not stream_id:
                    raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "PRIORITY on stream 0")
                stream = self._streams.get(stream_id)
                if length != 5 and stream is not None:
                    self._stream_error(
                        stream, ErrorCodes.FRAME_SIZE_ERROR, "malformed PRIORITY frame", out
                    )
            elif frame_type == _PUSH_PROMISE:
                raise _ConnectionError(
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
            raise _ConnectionError(
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
            raise _ConnectionError(
                ErrorCodes.FLOW_CONTROL_ERROR, "DATA beyond the connection window"
            )
        self._receive_window = window
        stream = self._streams.get(stream_id)
        if stream is None:
            self._unknown_stream(stream_id, "DATA")
            self._connection_credit(length)
            return
        self._connection_credit(length)
        if flags & _PADDED:
            if length == 0 or buffer[start] >= length:
                raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "DATA padding too long")
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
            and buffer[start] == 0
            and int.from_bytes(buffer[start + 1 : start + 5], "big") == size - 5
            and size - 5 <= self._max_message
        ):
            # One frame, one message (Liftbridge sends every streamed message
            # in its own frame): the payload's only copy.
            credit = stream.partial_credit + length
            stream.partial_credit = 0
            stream.wanted = False
            out.append(MessageReceived(stream_id, bytes(buffer[start + 5 : end]), credit))
        elif size or length:
            self._data(stream, bytes(buffer[start:end]), length, out)
        if flags & _END_STREAM and stream_id in self._streams:
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
            raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "HEADERS on stream 0")
        if flags & _PADDED:
            if end == start or buffer[start] >= end - start:
                raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "HEADERS padding too long")
            end -= buffer[start]
            start += 1
        if flags & _PRIORITY_FLAG:
            start += 5
            if start > end:
                raise _ConnectionError(ErrorCodes.FRAME_SIZE_ERROR, "HEADERS frame too short")
        fragment = bytes(buffer[start:end])
        if flags & _END_HEADERS:
            self._header_block_complete(stream_id, fragment, flags & _END_STREAM, out)
        else:
            self._header_block = [stream_id, flags & _END_STREAM, [fragment], len(fragment)]

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
            raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "unexpected CONTINUATION frame")
        fragments: List[bytes] = pending[2]
        fragments.append(bytes(buffer[start:end]))
        pending[3] += end - start
        if pending[3] > MAX_HEADER_BLOCK_SIZE or len(fragments) > _MAX_HEADER_FRAMES:
            raise _ConnectionError(
                ErrorCodes.ENHANCE_YOUR_CALM,
                f"header block larger than {MAX_HEADER_BLOCK_SIZE} bytes "
                f"or {_MAX_HEADER_FRAMES} frames",
            )
        if flags & _END_HEADERS:
            self._header_block = None
            self._header_block_complete(stream_id, b"".join(fragments), pending[1], out)

    def _header_block_complete(
        self, stream_id: int, block: bytes, end_stream: int, out: List[Event]
    ) -> None:
        # Decoded even for calls already ended: the decoder's dynamic table
        # must follow the server's encoder.
        try:
            headers, size = self._decoder.decode_sized(block)
        except hpack.exceptions.OversizedHeaderListError:
            raise _ConnectionError(
                ErrorCodes.ENHANCE_YOUR_CALM,
                f"header list larger than {MAX_HEADER_BLOCK_SIZE} bytes",
            ) from None
        except hpack.exceptions.HPACKError as exc:
            raise _ConnectionError(
                ErrorCodes.COMPRESSION_ERROR, f"invalid HPACK header block: {exc}"
            ) from None
        stream = self._streams.get(stream_id)
        if stream is None:
            self._unknown_stream(stream_id, "HEADERS")
            return
        if size > _MAX_HEADER_LIST_SIZE:
            self._stream_error(
                stream,
                ErrorCodes.CANCEL,
                f"response header list of {size} bytes exceeds {_MAX_HEADER_LIST_SIZE}",
                out,
                Status.RESOURCE_EXHAUSTED,
            )
            return
        if stream.headers is None:
            if not end_stream and headers[:1] and _is_informational(headers[0]):
                return  # an informational (1xx) response: the real one follows
            stream.headers = headers
            if end_stream:  # Trailers-Only: the status is in these headers
                self._stream_ended(stream, out)
                return
            failure = _not_grpc(headers)
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
            raise _ConnectionError(ErrorCodes.FRAME_SIZE_ERROR, "malformed RST_STREAM frame")
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
            raise _ConnectionError(ErrorCodes.FRAME_SIZE_ERROR, "malformed WINDOW_UPDATE frame")
        increment = int.from_bytes(buffer[start : start + 4], "big") & 0x7FFF_FFFF
        if stream_id == 0:
            if increment == 0:
                raise _ConnectionError(ErrorCodes.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > _MAX_WINDOW:
                raise _ConnectionError(
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
            if stream.send_window > _MAX_WINDOW:
                self._stream_error(
                    stream, ErrorCodes.FLOW_CONTROL_ERROR, "stream window above 2**31-1", out
                )
                return
        if not out or out[-1] is not _WINDOW_OPENED:
            out.append(_WINDOW_OPENED)

    def _h2_receive(self, frame: bytes, out: List[Event]) -> None:
        """Let h2 handle one connection-level frame (SETTINGS, GOAWAY)."""
        handlers = self._h2_handlers
        for event in self._h2.receive_data(frame):
            handler = handlers.get(event.__class__)
            if handler is not None:
                handler(event, out)
        self._out += self._h2.data_to_send()

    def _on_settings_changed(
        self, event: h2.events.RemoteSettingsChanged, out: List[Event]
    ) -> None:
        self.answered = True
        settings = self._h2.remote_settings
        self._max_streams = settings.max_concurrent_streams
        self._initial_window = settings.initial_window_size
        changed = event.changed_settings.get(h2.settings.SettingCodes.INITIAL_WINDOW_SIZE)
        if changed is not None:
            # RFC 9113 6.9.2: the change applies to every open stream's window.
            delta = changed.new_value - (changed.original_value or _DEFAULT_WINDOW)
            for stream in self._streams.values():
                stream.send_window += delta
                if stream.send_window > _MAX_WINDOW:
                    raise _ConnectionError(
                        ErrorCodes.FLOW_CONTROL_ERROR,
                        "SETTINGS_INITIAL_WINDOW_SIZE overflows a stream window",
                    )
        out.append(_SETTINGS_CHANGED)

    def _on_goaway(self, event: h2.events.ConnectionTerminated, out: List[Event]) -> None:
        self.draining = True
        last = event.last_stream_id or 0
        code = int(event.error_code or 0)
        for stream_id in [sid for sid in self._streams if sid > last]:
            del self._streams[stream_id]
            out.append(
                CallEnded(
                    stream_id,
                    Status.UNAVAILABLE,
                    "connection going away; call was not processed",
                    not_processed=True,
                )
            )
        out.append(GoAwayReceived(code, last, bytes(event.additional_data or b"")))

    # -- messages and call ends ------------------------------------------------

    def _data(self, stream: _Stream, data: bytes, credit: int, out: List[Event]) -> None:
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
                out.append(MessageReceived(stream.stream_id, data[5:], credit))
                return
            stream.buffer = bytearray(data)
        else:
            stream.buffer += data
        self._reassemble(stream, credit, out)

    def _reassemble(self, stream: _Stream, credit: int, out: List[Event]) -> None:
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
                    out.append(MessageReceived(stream.stream_id, message, 0))
                else:
                    out.append(
                        MessageReceived(stream.stream_id, message, stream.partial_credit + credit)
                    )
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
        stream: _Stream,
        error_code: int,
        message: str,
        out: List[Event],
        status: Status = Status.INTERNAL,
    ) -> None:
        """The peer got this call wrong: reset its stream and end it."""
        self.cancel(stream.stream_id, error_code)
        stream.buffer = None
        out.append(CallEnded(stream.stream_id, status, message))

    def _stream_ended(self, stream: _Stream, out: List[Event]) -> None:
        """The server ended the stream (END_STREAM): the call is over."""
        stream_id = stream.stream_id
        del self._streams[stream_id]
        if not stream.local_closed and not self.closed:
            # The server finished before we half-closed: tell it we are done
            # sending too, as grpc-go does, so the stream is freed on both ends.
            self._out += _rst_stream(stream_id, ErrorCodes.NO_ERROR)
        out.append(self._call_status(stream))

    def _call_status(self, stream: _Stream) -> CallEnded:
        stream_id = stream.stream_id
        headers = stream.headers
        if headers is None:
            return CallEnded(stream_id, Status.INTERNAL, "stream ended without response headers")
        failure = _not_grpc(headers)
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
