"""Helpers of the sans-IO tests: a ClientProtocol wired to an h2 server, raw frames."""

from __future__ import annotations

from typing import Any, Iterable, List, Optional, Sequence, Tuple

import h2.config
import h2.connection
import h2.events
from hpack.hpack import encode_integer

from lbwire.grpc.protocol import CallEnded, ClientProtocol, Event, MessagesReceived

OK_HEADERS = [(b":status", b"200"), (b"content-type", b"application/grpc")]


def frame(payload: bytes, flag: int = 0) -> bytes:
    """A gRPC message: compressed flag, 4-byte length, payload."""
    return bytes([flag]) + len(payload).to_bytes(4, "big") + payload


def h2_frame(frame_type: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """An HTTP/2 frame, written by hand (any type, flags, stream, payload)."""
    return (
        len(payload).to_bytes(3, "big")
        + bytes([frame_type, flags])
        + stream_id.to_bytes(4, "big")
        + payload
    )


def _string(data: bytes) -> bytes:
    return bytes(encode_integer(len(data), 7)) + data


def literal_block(headers: Iterable[Tuple[bytes, bytes]]) -> bytes:
    """An HPACK block of literals without indexing: valid whatever the table holds."""
    return b"".join(b"\x00" + _string(name) + _string(value) for name, value in headers)


class Pair:
    """A ClientProtocol wired by hand to a validating h2 server connection."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("authority", "example.test:50051")
        self.client = ClientProtocol(**kwargs)
        self.server = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        self.server.initiate_connection()
        self.client.initiate()
        self.server_events: List[h2.events.Event] = []
        self.to_server()
        assert self.to_client() == [] or all(
            type(e).__name__ in ("SettingsChanged", "WindowOpened") for e in self.to_client()
        )
        self.to_server()

    def to_server(self) -> List[h2.events.Event]:
        data = self.client.data_to_send()
        events = self.server.receive_data(data) if data else []
        self.server_events.extend(events)
        return events

    def to_client(self, data: Optional[bytes] = None) -> List[Event]:
        if data is None:
            data = self.server.data_to_send()
        return self.client.receive_data(data)

    def call(self, path: str = "/pkg.Svc/Method", **kwargs: Any) -> int:
        stream_id = self.client.start_call(path, **kwargs)
        self.to_server()
        return stream_id

    def headers(self, stream_id: int, extra: Sequence[Tuple[bytes, bytes]] = ()) -> None:
        self.server.send_headers(stream_id, [*OK_HEADERS, *extra])

    def trailers(
        self,
        stream_id: int,
        status: int = 0,
        message: Optional[bytes] = None,
        extra: Sequence[Tuple[bytes, bytes]] = (),
    ) -> None:
        fields = [(b"grpc-status", str(status).encode())]
        if message is not None:
            fields.append((b"grpc-message", message))
        self.server.send_headers(stream_id, [*fields, *extra], end_stream=True)

    def request_headers(self, stream_id: int) -> List[Tuple[bytes, bytes]]:
        for event in self.server_events:
            if isinstance(event, h2.events.RequestReceived) and event.stream_id == stream_id:
                return list(event.headers)  # type: ignore[arg-type]
        raise AssertionError("no request")


def of(events: List[Event], kind: type) -> List[Any]:
    return [e for e in events if isinstance(e, kind)]


def messages(events: List[Event]) -> List[bytes]:
    return [data for e in of(events, MessagesReceived) for data in e.messages]


def credits(events: List[Event]) -> List[int]:
    """The credit of each message of `events`, in order."""
    return [credit for e in of(events, MessagesReceived) for credit in e.credits]


def ended(events: List[Event]) -> CallEnded:
    (end,) = of(events, CallEnded)
    return end
