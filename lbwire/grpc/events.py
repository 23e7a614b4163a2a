"""The events the sans-IO core (:mod:`lbwire.grpc.protocol`) reports per call and connection."""

from __future__ import annotations

from typing import List

from .status import Metadata, Status

__all__ = [
    "CallEnded",
    "ConnectionClosed",
    "Event",
    "GoAwayReceived",
    "MessagesReceived",
    "PingAcknowledged",
    "ResponseHeaders",
    "SettingsChanged",
    "WindowOpened",
]


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


class MessagesReceived(Event):
    """Complete gRPC messages (without their 5-byte prefixes) arrived on a call, in order.

    The messages of one call that arrive one after the other in the bytes
    given to one :meth:`ClientProtocol.receive_data` come as one event:
    Liftbridge sends every streamed message in a DATA frame of its own, so
    one received chunk often holds hundreds, and each is then routed once
    per chunk, not once per message.

    ``credits[i]`` is the call's flow-control credit that ``messages[i]``
    carries, to hand back through :meth:`ClientProtocol.consumed` once the
    message has been consumed (if the call ended meanwhile, there is
    nothing to give back).
    """

    __slots__ = ("credits", "messages", "stream_id")

    def __init__(self, stream_id: int, messages: List[bytes], credits: List[int]) -> None:
        self.stream_id = stream_id
        self.messages = messages
        self.credits = credits


class CallEnded(Event):
    """A call is over: the server sent its status, reset it, or it failed.

    The protocol has forgotten the stream when this is emitted.
    """

    __slots__ = ("message", "not_processed", "reset", "status", "stream_id", "trailers")

    def __init__(
        self,
        stream_id: int,
        status: Status,
        message: str,
        trailers: Metadata = (),
        not_processed: bool = False,
        reset: bool = False,
    ) -> None:
        self.stream_id = stream_id
        self.status = status
        self.message = message
        self.trailers = trailers
        #: The server never began the call (its stream was beyond a GOAWAY's
        #: last stream id, or refused with REFUSED_STREAM): safe to send again.
        self.not_processed = not_processed
        #: The server ended the call with RST_STREAM rather than a status.
        self.reset = reset


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


#: The events without data are shared instances.
WINDOW_OPENED = WindowOpened()
SETTINGS_CHANGED = SettingsChanged()
