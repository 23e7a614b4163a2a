"""A bare h2 server on loopback whose misbehaviour each test scripts (a fake peer).

Import as ``from helpers.h2peer import raw_server``.

grpcio cannot be told to ignore deadlines, send GOAWAY twice or cap
concurrent streams at 2; this server can. Requests are answered by path:

* ``/t/Echo``: one response message (the request), status OK.
* ``/t/Hang``: nothing, ever (ignores grpc-timeout).
* ``/t/Http503``: a non-gRPC 503 response.
* ``/t/Refuse``: RST_STREAM(REFUSED_STREAM).
* any path in ``RawServer.refuse_once``: RST_STREAM(REFUSED_STREAM) the first
  time, then answered as usual.
* ``/t/Close``: the server closes the TCP connection.
* ``/t/Hold``: answered like Echo once ``release_held`` is called.
* ``/t/Burst``: three 16 KiB messages in one write, then nothing.
* ``/t/Garbage``: response headers, then bytes that are not HTTP/2.
* ``/t/BadTrailers``: response headers, then trailers without END_STREAM.
* any path in ``RawServer.replies``: the messages its function returns for the
  request, each split into DATA frames at ``RawServer.cuts``, then status OK
  (or nothing, if the path is in ``RawServer.open_ended``).
* any path in ``RawServer.streamed``: a bidirectional call answered message by
  message, as each request message arrives, with what its function returns;
  the call stays open.
"""

from __future__ import annotations

import contextlib
from typing import AsyncIterator, Awaitable, Callable, Dict, List, Optional, Sequence, Set

import anyio
import anyio.abc
import h2.config
import h2.connection
import h2.events
import h2.settings
from anyio.abc import SocketAttribute
from h2.errors import ErrorCodes

from lbwire.grpc.testing import Transport, memory_transport

OK_HEADERS = [(b":status", b"200"), (b"content-type", b"application/grpc")]


class RawConnection:
    def __init__(self, server: RawServer, stream: anyio.abc.ByteStream) -> None:
        self.server = server
        self.stream = stream
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        self.paths: Dict[int, bytes] = {}
        self.bodies: Dict[int, bytes] = {}
        # Streamed calls whose response headers went out.
        self.answering: Set[int] = set()
        self.held: List[int] = []
        # Bytes to send before h2's next output (see queue()).
        self.queued = bytearray()

    async def flush(self) -> None:
        data = bytes(self.queued) + self.h2.data_to_send()
        self.queued.clear()
        if data:
            await self.stream.send(data)

    def queue(self, frame: bytes) -> None:
        """Queue a hand-written frame after what h2 has queued (h2 would refuse it)."""
        self.queued += self.h2.data_to_send() + frame

    def respond(self, stream_id: int, payload: bytes) -> None:
        self.h2.send_headers(stream_id, OK_HEADERS)
        data = b"\x00" + len(payload).to_bytes(4, "big") + payload
        size = self.h2.max_outbound_frame_size
        for start in range(0, len(data), size):  # (assumes the window allows it)
            self.h2.send_data(stream_id, data[start : start + size])
        self.h2.send_headers(stream_id, [(b"grpc-status", b"0")], end_stream=True)

    def respond_messages(self, stream_id: int, messages: Sequence[bytes], end: bool) -> None:
        """Send messages cut into DATA frames at the server's cut points."""
        self.h2.send_headers(stream_id, OK_HEADERS)
        data = b"".join(b"\x00" + len(m).to_bytes(4, "big") + m for m in messages)
        size = self.h2.max_outbound_frame_size
        cuts = sorted({c for c in self.server.cuts if 0 < c < len(data)})
        start = 0
        for stop in [*cuts, len(data)]:
            for piece in range(start, stop, size):
                self.h2.send_data(stream_id, data[piece : min(stop, piece + size)])
            start = stop
        if end:
            self.h2.send_headers(stream_id, [(b"grpc-status", b"0")], end_stream=True)

    def answer_streamed(self, stream_id: int, answer: Callable[[bytes], Sequence[bytes]]) -> None:
        """Answer each complete request message received so far on a streamed call."""
        body = self.bodies.get(stream_id, b"")
        while len(body) >= 5 and len(body) >= 5 + int.from_bytes(body[1:5], "big"):
            end = 5 + int.from_bytes(body[1:5], "big")
            request, body = body[5:end], body[end:]
            if stream_id not in self.answering:
                self.answering.add(stream_id)
                self.h2.send_headers(stream_id, OK_HEADERS)
            for message in answer(request):
                self.h2.send_data(stream_id, b"\x00" + len(message).to_bytes(4, "big") + message)
        self.bodies[stream_id] = body

    def raw_frame(self, frame_type: int, flags: int, stream_id: int, payload: bytes) -> None:
        """Queue a frame h2 would refuse to send (literal HPACK only)."""
        self.queue(
            len(payload).to_bytes(3, "big")
            + bytes([frame_type, flags])
            + stream_id.to_bytes(4, "big")
            + payload
        )

    def goaway(self, last_stream_id: int) -> None:
        # h2 only sends one GOAWAY; write the frame ourselves.
        frame = (
            (8).to_bytes(3, "big")
            + b"\x07\x00\x00\x00\x00\x00"
            + last_stream_id.to_bytes(4, "big")
            + b"\x00\x00\x00\x00"
        )
        self.queue(frame)

    async def handle(self, event: h2.events.Event) -> None:
        server = self.server
        if isinstance(event, h2.events.RequestReceived):
            headers = dict(event.headers)  # type: ignore[arg-type]
            self.paths[event.stream_id] = headers[b":path"]
            server.requests.append((event.stream_id, headers))
            open_now = len(self.paths)
            server.max_open = max(server.max_open, open_now)
            path = headers[b":path"]
            if path == b"/t/Http503":
                self.h2.send_headers(
                    event.stream_id,
                    [(b":status", b"503"), (b"content-type", b"text/plain")],
                    end_stream=True,
                )
                self.paths.pop(event.stream_id)
            elif path in server.refuse_once:
                server.refuse_once.discard(path)
                self.h2.reset_stream(event.stream_id, ErrorCodes.REFUSED_STREAM)
                self.paths.pop(event.stream_id)
            elif path == b"/t/Refuse":
                self.h2.reset_stream(event.stream_id, ErrorCodes.REFUSED_STREAM)
                self.paths.pop(event.stream_id)
            elif path == b"/t/Close":
                await self.stream.aclose()
            elif path == b"/t/Garbage":
                self.h2.send_headers(event.stream_id, OK_HEADERS)
                await self.flush()
                await self.stream.send(b"\xff" * 64)
            elif path == b"/t/BadTrailers":
                self.h2.send_headers(event.stream_id, OK_HEADERS)
                # grpc-status: 0 as a literal without indexing, no END_STREAM.
                self.raw_frame(1, 0x4, event.stream_id, b"\x00\x0bgrpc-status\x010")
        elif isinstance(event, h2.events.DataReceived):
            self.bodies[event.stream_id] = self.bodies.get(event.stream_id, b"") + event.data
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            path = self.paths.get(event.stream_id)
            if path in server.streamed:
                self.answer_streamed(event.stream_id, server.streamed[path])
        elif isinstance(event, h2.events.StreamEnded):
            stream_id = event.stream_id
            path = self.paths.get(stream_id)
            body = self.bodies.pop(stream_id, b"")[5:]
            if path in server.replies:
                messages = server.replies[path](body)
                self.respond_messages(stream_id, messages, path not in server.open_ended)
            elif path == b"/t/Echo":
                self.respond(stream_id, body)
                self.paths.pop(stream_id)
            elif path == b"/t/Burst":
                self.h2.send_headers(stream_id, OK_HEADERS)
                message = b"\x00" + (16379).to_bytes(4, "big") + b"b" * 16379
                for _ in range(3):
                    self.h2.send_data(stream_id, message)
            elif path == b"/t/Hold":
                self.held.append(stream_id)
                self.bodies[stream_id] = body
                if server.on_hold is not None:
                    await server.on_hold(self)
        elif isinstance(event, h2.events.PingAckReceived):
            server.ping_acked.set()
        elif isinstance(event, h2.events.StreamReset):
            self.paths.pop(event.stream_id, None)
            server.resets.append((event.stream_id, event.error_code))
            server.reset_seen.set()
            server.reset_seen = anyio.Event()

    def release_held(self) -> None:
        for stream_id in self.held:
            self.respond(stream_id, self.bodies.pop(stream_id, b""))
            self.paths.pop(stream_id, None)
        self.held.clear()

    async def run(self) -> None:
        self.h2.initiate_connection()
        if self.server.max_concurrent_streams is not None:
            self.h2.update_settings(
                {
                    h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: (
                        self.server.max_concurrent_streams
                    )
                }
            )
        await self.flush()
        with contextlib.suppress(
            anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError
        ):
            while True:
                data = await self.stream.receive()
                if self.server.stalled.is_set():
                    await anyio.sleep_forever()
                for event in self.h2.receive_data(data):
                    await self.handle(event)
                await self.flush()


class RawServer:
    def __init__(self) -> None:
        self.port = 0
        self.max_concurrent_streams: Optional[int] = None
        self.connections: List[RawConnection] = []
        self.requests: List[tuple[int, Dict[bytes, bytes]]] = []
        self.resets: List[tuple[int, int]] = []
        self.reset_seen = anyio.Event()
        self.ping_acked = anyio.Event()
        # Set to stop reading: a peer (or proxy) that hangs without closing.
        self.stalled = anyio.Event()
        self.max_open = 0
        self.on_hold: Optional[object] = None
        # Scripted answers by path (see the module docstring).
        self.replies: Dict[bytes, Callable[[bytes], Sequence[bytes]]] = {}
        self.open_ended: Set[bytes] = set()
        self.streamed: Dict[bytes, Callable[[bytes], Sequence[bytes]]] = {}
        self.refuse_once: Set[bytes] = set()
        self.cuts: List[int] = []
        # (memory_server) Opens an in-memory connection to this server.
        self.connect: Optional[Callable[[], Awaitable[Transport]]] = None

    async def serve(self, stream: anyio.abc.ByteStream) -> None:
        connection = RawConnection(self, stream)
        self.connections.append(connection)
        async with stream:
            await connection.run()


@contextlib.asynccontextmanager
async def memory_server() -> AsyncIterator[RawServer]:
    """The same server over in-memory connections (no sockets).

    Give ``server.connect`` to a channel as its ``connect_transport``.
    """
    server = RawServer()
    async with anyio.create_task_group() as tasks:

        async def connect() -> Transport:
            transport, server_end = memory_transport()
            tasks.start_soon(server.serve, server_end)
            return transport

        server.connect = connect
        try:
            yield server
        finally:
            tasks.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def raw_server() -> AsyncIterator[RawServer]:
    server = RawServer()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    server.port = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tasks:  # closes the listening socket
        tasks.start_soon(listener.serve, server.serve)
        try:
            yield server
        finally:
            tasks.cancel_scope.cancel()
