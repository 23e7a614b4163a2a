"""The anyio transport: a channel, its HTTP/2 connection and the call objects.

All gRPC and HTTP/2 logic lives in :mod:`lbwire.grpc.protocol`; this module only
moves bytes between a socket and a :class:`~lbwire.grpc.protocol.ClientProtocol`
and routes its events to the calls waiting for them.

* Received bytes go to the protocol, and its events through a class-to-handler
  table to the calls, from one place per connection: a reader task, or on
  asyncio without TLS the event loop's callback itself (see :mod:`._io`).
* A call's task waits for its call's next event on the running backend's own
  primitive (a future, a parked trio task), not an anyio Event.
* Writes have no lock: whichever task finds no write in progress becomes the
  writer and drains the protocol's outbound buffer until it is empty (bytes
  queued by other tasks meanwhile included), shielded from cancellation since
  a half-written frame would corrupt the connection for every call. Other
  tasks return at once: their bytes are already queued, in order. Where the
  socket takes the bytes at once (the asyncio transport; a trio socket with
  room in its buffer) the writer does not wait at all (so a loop of sends
  yields only when flow control or the socket's buffer holds it back).
* Answers the reader owes the server (PING acknowledgements: grpc-go sends a
  PING with nearly every response) wait for one pass of the scheduler when
  the read woke a call: the woken caller's next request usually carries them,
  one system call instead of two.
* A call never holds more than its stream window of received data: the
  flow-control credit of a message is returned only when the application
  takes it, or waits for it (see the protocol module).
"""

from __future__ import annotations

import collections
import contextlib
import math
import socket
import ssl
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterator,
    Callable,
    Deque,
    Dict,
    Iterable,
    Optional,
    Tuple,
    Type,
)

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.tls import TLSAttribute

from ._io import AsyncioSocket, Waiter, connect_asyncio, current_backend, waiter_for
from .config import ChannelConfig
from .keepalive import KeepaliveSchedule
from .protocol import (
    CallEnded,
    ClientProtocol,
    ConnectionClosed,
    Event,
    GoAwayReceived,
    MessageReceived,
    PingAcknowledged,
    ResponseHeaders,
    SettingsChanged,
    WindowOpened,
    encode_metadata,
)
from .status import GRPCError, Metadata, MetadataValue, Status

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Channel", "StreamStreamCall", "UnaryStreamCall"]

MetadataArg = Optional[Iterable[Tuple[str, MetadataValue]]]

# Read size: large enough that a burst of small streamed messages is handled
# in one receive_data() call (one h2 pass, one wake-up of the consumer).
_READ_SIZE = 256 * 1024
# Errors that mean the connection is gone.
_CONNECTION_ERRORS = (
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    OSError,
    ssl.SSLError,
)
_PING_DATA = b"lbwire\x00\x00"
_OK = Status.OK


def _frame(payload: bytes) -> bytes:
    """Prefix a message with its gRPC header: no compression, 4-byte length."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


# OpenSSL reasons meaning the peer answered the ClientHello with something
# other than TLS (a plaintext server).
_NOT_TLS = (
    "WRONG_VERSION_NUMBER",
    "RECORD_LAYER_FAILURE",
    "PACKET_LENGTH_TOO_LONG",
    "HTTP_REQUEST",
    "UNKNOWN_PROTOCOL",
)


def _describe_tls_error(exc: ssl.SSLError) -> str:
    """Name the cause of a TLS failure in words; OpenSSL's text alone is cryptic."""
    reason = str(exc.reason or "")
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = str(exc.verify_message or exc).rstrip(".")
        if "hostname mismatch" in detail.lower():
            # OpenSSL: "Hostname mismatch, certificate is not valid for 'x'."
            return (
                f"certificate verify failed: {detail[:1].lower()}{detail[1:]} (connect by "
                f"a name it was issued for, or give that name as the TLS server host name)"
            )
        return (
            f"certificate verify failed: {detail} (the server's certificate is not "
            f"signed by a CA the ssl_context trusts)"
        )
    alert = _tls_alert(exc)
    if alert is not None:
        # Alerts the server sent: after the handshake, those about the
        # certificate the client sent (or did not send).
        if alert == "certificate required":
            return (
                "the server requires a client certificate and none was sent "
                "(TLS alert: certificate required)"
            )
        if _is_certificate_alert(alert):
            return f"the server rejected the client certificate (TLS alert: {alert})"
        return f"the server refused the TLS connection (TLS alert: {alert})"
    if reason in _NOT_TLS:
        return (
            f"the server does not speak TLS (a plaintext server? then give no ssl_context): {exc}"
        )
    return f"TLS error: {exc}"


def _tls_alert(exc: ssl.SSLError) -> Optional[str]:
    """The TLS alert the peer sent ("unknown ca"...), if that is what failed."""
    reason = str(exc.reason or "")
    if "ALERT_" not in reason:
        return None
    return reason.split("ALERT_", 1)[1].replace("_", " ").lower()


def _is_certificate_alert(alert: str) -> bool:
    return "certificate" in alert or alert in ("unknown ca", "access denied")


def _failure_status(exc: BaseException) -> Status:
    """The status of calls a connection failure ends.

    A refused certificate (verification failed, or the server's alert) is a
    configuration error: UNAUTHENTICATED, which callers do not retry, unlike
    UNAVAILABLE.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Status.UNAUTHENTICATED
    if isinstance(exc, ssl.SSLError):
        alert = _tls_alert(exc)
        if alert is not None and _is_certificate_alert(alert):
            return Status.UNAUTHENTICATED
    return Status.UNAVAILABLE


def _describe_failure(exc: BaseException, *, tls: bool, answered: bool) -> str:
    """Say why a connection failed, naming the cause a user can act on."""
    if isinstance(exc, ssl.SSLError) and not isinstance(
        exc, (ssl.SSLZeroReturnError, ssl.SSLEOFError)
    ):
        return _describe_tls_error(exc)
    if not answered and isinstance(
        exc, (anyio.EndOfStream, ssl.SSLZeroReturnError, ssl.SSLEOFError)
    ):
        # Servers that check client certificates after the handshake (TLS
        # 1.3) without sending an alert, as grpcio's does, just close.
        if tls:
            return (
                "the server closed the TLS connection without answering: it may "
                "require a client certificate (none was sent, or one it does not trust)"
            )
        return (
            "the server closed the connection without answering (a TLS server? "
            "then give an ssl_context)"
        )
    return str(exc) or repr(exc)


class _Connection:
    """One HTTP/2 connection: socket, protocol, calls by stream id, its task.

    The socket is read in one of two ways. On asyncio without TLS, an
    :class:`~lbwire.grpc._io.AsyncioSocket` hands received bytes to
    :meth:`_received` from the loop's callback and the connection's task only
    waits for the end. Otherwise the connection's task reads an anyio byte
    stream (:meth:`_read_loop`).
    """

    def __init__(
        self,
        channel: Channel,
        stream: Optional[anyio.abc.ByteStream],
        protocol: ClientProtocol,
        *,
        waiter: Waiter,
        asyncio_socket: Optional[AsyncioSocket] = None,
        raw_socket: Optional[socket.socket] = None,
    ) -> None:
        self._channel = channel
        self._stream = stream
        self._socket = asyncio_socket
        # trio without TLS: writes go to the socket directly while it takes
        # them (anyio's send costs a pass through the scheduler each time).
        self._raw_socket = raw_socket
        self.protocol = protocol
        #: Wakes the task waiting for a call, by the running backend's means.
        self.waiter = waiter
        self.calls: Dict[int, _Call] = {}
        self.error: Optional[GRPCError] = None  # set once the connection failed
        self._writing = False
        self._write_scheduled = False
        # (byte stream) Set when queued data waits for the writer task.
        self._write_wanted = anyio.Event()
        # Whether handling the last read woke a call's task.
        self._woke = False
        self._window_event: Optional[anyio.Event] = None
        self._capacity_event: Optional[anyio.Event] = None
        self._ping_event: Optional[anyio.Event] = None
        self._scope = anyio.CancelScope()
        self._done = anyio.Event()
        self._ended = anyio.Event()  # (asyncio socket) it closed, or we must close it
        self._end_reason = "connection closed"
        self._crash: Optional[Exception] = None
        # When to ping (None: never); it hears of every read.
        self._keepalive: Optional[KeepaliveSchedule] = None
        if channel._keepalive_time is not None:
            self._keepalive = KeepaliveSchedule(
                channel._keepalive_time,
                without_calls=channel.config.keepalive_without_calls,
                now=waiter.clock(),
            )
        #: Whether the server's first SETTINGS arrived: a close before it
        #: usually means the server refused us (see _describe_failure).
        self.answered = False
        # Set once the server's SETTINGS arrived or the connection failed.
        self._answer = anyio.Event()
        # (keepalive) Set when a call starts while the keepalive task waits
        # for one: pings are only due while calls are in progress.
        self._call_started: Optional[anyio.Event] = None
        # Cancels the write in progress when the connection is given up (a
        # write to a peer that stopped reading never returns otherwise).
        self._write_scope: Optional[anyio.CancelScope] = None
        self._handlers: Dict[type, Callable[[Event], None]] = {
            MessageReceived: self._on_message,  # type: ignore[dict-item]
            CallEnded: self._on_call_ended,  # type: ignore[dict-item]
            ResponseHeaders: self._on_headers,  # type: ignore[dict-item]
            WindowOpened: self._on_window_opened,
            SettingsChanged: self._on_settings_changed,
            PingAcknowledged: self._on_ping_ack,
            GoAwayReceived: self._on_goaway,  # type: ignore[dict-item]
            ConnectionClosed: self._on_connection_closed,  # type: ignore[dict-item]
        }
        if asyncio_socket is not None:
            asyncio_socket.attach(self._received, self._socket_lost)

    @property
    def usable(self) -> bool:
        """Whether new calls may be started on this connection."""
        return self.error is None and not self.protocol.draining

    # -- the connection's task ---------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Read and dispatch until the connection ends or :meth:`close` is called."""
        reason = "connection closed"
        try:
            with self._scope:
                task_status.started()
                async with anyio.create_task_group() as tasks:
                    if self._keepalive is not None:
                        tasks.start_soon(self._keepalive_loop, self._keepalive)
                    if self._socket is None:
                        tasks.start_soon(self._write_loop)
                        reason = await self._read_loop()
                    else:
                        await self._ended.wait()
                        reason = self._end_reason
                        if self._crash is not None:
                            raise self._crash
                    # Before the task group's exit (a checkpoint): a flush
                    # failing meanwhile must report this cause, not its echo.
                    self._terminate(GRPCError(Status.UNAVAILABLE, reason))
                    tasks.cancel_scope.cancel()
        finally:
            self._terminate(GRPCError(Status.UNAVAILABLE, reason))
            with anyio.CancelScope(shield=True):
                if self._socket is not None:
                    if self._socket.transport is not None:
                        self._socket.transport.abort()
                elif self._stream is not None:
                    await anyio.aclose_forcefully(self._stream)
            self._done.set()

    def _feed(self, data: bytes) -> None:
        """Hand received bytes to the protocol and its events to the calls."""
        if self._keepalive is not None:
            self._keepalive.received(self.waiter.clock())
        self._woke = False
        handlers = self._handlers
        for event in self.protocol.receive_data(data):
            handlers[event.__class__](event)

    async def _read_loop(self) -> str:
        assert self._stream is not None
        receive = self._stream.receive
        protocol = self.protocol
        try:
            while self.error is None:
                data = await receive(_READ_SIZE)
                self._feed(data)
                # Answers to PING and SETTINGS, resets, WINDOW_UPDATEs.
                if protocol.has_data_to_send:
                    if self._woke:
                        # A woken caller often sends next (the next call of a
                        # loop): our answers then go out in its write, one
                        # system call (and one read by the server) less.
                        await anyio.lowlevel.checkpoint()
                        if protocol.has_data_to_send:  # (trio may run us first)
                            await anyio.lowlevel.checkpoint()
                    await self.flush()
                if protocol.draining and not self.calls:
                    return "connection drained after GOAWAY"
        except anyio.EndOfStream as exc:
            if self.answered:
                return "connection closed by peer"
            return f"connection closed by peer: {self._describe(exc)}"
        except _CONNECTION_ERRORS as exc:
            error = self._lost(exc)
            self._terminate(error)
            return error.message
        except GRPCError as exc:  # a failed flush
            return exc.message
        return self.error.message if self.error is not None else "connection closed"

    # -- the asyncio socket's callbacks (run by the event loop) -------------------

    def _received(self, data: bytes) -> None:
        try:
            self._handle_received(data)
        except Exception as exc:
            # A bug here must not vanish into the loop's exception handler
            # with the calls left hanging: the connection's task raises it.
            self._crash = exc
            self._terminate(GRPCError(Status.UNAVAILABLE, f"internal error: {exc!r}"))
            self._end("internal error")

    def _handle_received(self, data: bytes) -> None:
        self._feed(data)
        protocol = self.protocol
        if protocol.has_data_to_send:
            if self._woke and self.error is None:
                # As in _read_loop: let the woken caller's write carry ours.
                self._schedule_write()
            else:
                self._write_now()
        if self.error is not None:
            self._end(self.error.message)
        elif protocol.draining and not self.calls:
            self._end("connection drained after GOAWAY")

    def _schedule_write(self) -> None:
        """asyncio: write what is queued once this pass of the event loop is over."""
        if not self._write_scheduled:
            self._write_scheduled = True
            assert self._socket is not None
            self._socket.loop.call_soon(self._scheduled_write)

    def _scheduled_write(self) -> None:
        self._write_scheduled = False
        self._write_now()

    def _write_now(self) -> None:
        asyncio_socket = self._socket
        assert asyncio_socket is not None
        transport = asyncio_socket.transport
        if transport is not None and not transport.is_closing():
            transport.write(self.protocol.data_to_send())

    def _socket_lost(self, exc: Optional[BaseException]) -> None:
        if exc is None:
            reason = "connection closed by peer"
            if not self.answered:
                reason += f": {self._describe(anyio.EndOfStream())}"
        else:
            reason = f"connection lost: {self._describe(exc)}"
        # The calls fail now, not once the connection's task got to run.
        self._terminate(GRPCError(Status.UNAVAILABLE, reason))
        self._end(reason)

    def _end(self, reason: str) -> None:
        if not self._ended.is_set():
            self._end_reason = reason
            self._ended.set()

    async def _keepalive_loop(self, schedule: KeepaliveSchedule) -> None:
        channel = self._channel
        timeout = channel.config.keepalive_timeout
        while True:
            # The channel doubles it after a GOAWAY "too_many_pings".
            assert channel._keepalive_time is not None
            schedule.interval = channel._keepalive_time
            now = anyio.current_time()
            due = schedule.next_ping(bool(self.calls))
            if due == math.inf:
                # No PING is due until a call starts; then one may be due at
                # once (nothing was received for a while): wake with it.
                started = self._call_started = anyio.Event()
                await started.wait()
                continue
            if due > now:
                await anyio.sleep(due - now)
                continue
            schedule.pinged(now)
            event = self._ping_event = anyio.Event()
            self.protocol.ping(_PING_DATA)
            with anyio.move_on_after(timeout):
                # Not flush(): a write to a peer that stopped reading may
                # never finish, and the timeout must still end the wait.
                try:
                    await self.flush_soon()
                except GRPCError:
                    return
                await event.wait()
            if not event.is_set():
                self._terminate(
                    GRPCError(Status.UNAVAILABLE, "keepalive ping not answered in time")
                )
                self._scope.cancel()
                return

    # -- event handlers (run by the reader) ---------------------------------------

    def _on_message(self, event: MessageReceived) -> None:
        call = self.calls.get(event.stream_id)
        if call is None:
            return  # (the call was abandoned: its credit is moot)
        call._messages.append(event)
        if call._waiter is not None:
            self.waiter.wake(call)
            self._woke = True

    def _on_call_ended(self, event: CallEnded) -> None:
        call = self.calls.pop(event.stream_id, None)
        if call is not None:
            call._ended(event)
        if self._capacity_event is not None:
            self._wake_capacity()
        # A sender of this call may be waiting for window that will never open.
        if self._window_event is not None:
            self._on_window_opened(event)

    def _on_headers(self, event: ResponseHeaders) -> None:
        call = self.calls.get(event.stream_id)
        if call is not None:
            call.initial_metadata = event.metadata

    def _on_window_opened(self, event: Event) -> None:
        window = self._window_event
        if window is not None:
            self._window_event = None
            window.set()

    def _on_settings_changed(self, event: Event) -> None:
        self.answered = True
        self._answer.set()
        self._on_window_opened(event)
        self._wake_capacity()

    def _on_ping_ack(self, event: Event) -> None:
        if self._ping_event is not None:
            self._ping_event.set()

    def _on_goaway(self, event: GoAwayReceived) -> None:
        if event.debug_data == b"too_many_pings":
            self._channel._too_many_pings()
        self._channel._forget(self)
        self._wake_capacity()

    def _on_connection_closed(self, event: ConnectionClosed) -> None:
        self._terminate(GRPCError(Status.UNAVAILABLE, event.reason))

    # -- used by calls -------------------------------------------------------------

    async def flush(self) -> None:
        """Send everything the protocol has queued (see the module docstring)."""
        protocol = self.protocol
        if self._writing or not protocol.has_data_to_send:
            return
        asyncio_socket = self._socket
        if asyncio_socket is not None:
            # The transport takes everything at once (and buffers what the
            # socket does not); wait only if its buffer is full.
            self._write_now()
            if asyncio_socket.write_paused:
                await asyncio_socket.wait_drained()
            return
        assert self._stream is not None
        self._writing = True
        try:
            data = protocol.data_to_send()
            if self._raw_socket is not None:
                try:
                    sent = self._raw_socket.send(data)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                if sent == len(data):
                    return
                data = data[sent:]
            # Shielded from the caller's cancellation (a half-written frame
            # would corrupt the connection), not from the connection's end.
            with anyio.CancelScope(shield=True), anyio.CancelScope() as scope:
                self._write_scope = scope
                if self.error is not None:
                    scope.cancel()
                while data:
                    await self._stream.send(data)
                    data = protocol.data_to_send()
            self._write_scope = None
            if scope.cancelled_caught:
                assert self.error is not None
                raise GRPCError(self.error.status, self.error.message)
        except _CONNECTION_ERRORS as exc:
            self._terminate(self._lost(exc))
            self._scope.cancel()
            # The first failure names the cause (the reader may have seen the
            # server's TLS alert that broke this write).
            first = self.error
            assert first is not None
            raise GRPCError(first.status, first.message) from exc
        finally:
            self._writing = False

    async def flush_soon(self) -> None:
        """Like :meth:`flush`, but merge this write with others queued meanwhile.

        For messages of streaming calls: a task publishing many messages in a
        row (or many tasks woken together) then costs one system call for all
        of them instead of one each. The write happens as soon as the running
        task yields (asyncio: a ``call_soon`` callback; otherwise the
        connection's writer task); flow control still bounds what waits.
        """
        if not self.protocol.has_data_to_send:
            return
        asyncio_socket = self._socket
        if asyncio_socket is None:
            # The writer task sends it (a byte stream has no call_soon).
            self._write_wanted.set()
            return
        if asyncio_socket.write_paused:
            await asyncio_socket.wait_drained()
        self._schedule_write()

    async def _write_loop(self) -> None:
        """(byte stream) Send what :meth:`flush_soon` queued, a batch at a time."""
        while True:
            await self._write_wanted.wait()
            self._write_wanted = anyio.Event()
            try:
                await self.flush()
            except GRPCError:
                return  # the connection failed: flush() ended its calls

    async def wait_window(self) -> None:
        """Wait until the peer opens a flow-control window (or the connection fails)."""
        event = self._window_event
        if event is None:
            event = self._window_event = anyio.Event()
        await event.wait()

    async def wait_capacity(self) -> None:
        """Wait until a call ends or the peer's settings change."""
        event = self._capacity_event
        if event is None:
            event = self._capacity_event = anyio.Event()
        await event.wait()

    def _wake_capacity(self) -> None:
        event = self._capacity_event
        if event is not None:
            self._capacity_event = None
            event.set()

    def _lost(self, exc: BaseException) -> GRPCError:
        """The error that ends every call when the connection broke with `exc`."""
        # (With TLS 1.3 the server's certificate alert comes after the handshake.)
        return GRPCError(_failure_status(exc), f"connection lost: {self._describe(exc)}")

    def _describe(self, exc: BaseException) -> str:
        tls = self._channel.config.ssl_context is not None
        return _describe_failure(exc, tls=tls, answered=self.answered)

    def _terminate(self, error: GRPCError) -> None:
        """The connection is unusable: every call on it ends with ``error``."""
        if self.error is not None:
            return
        self.error = error
        self._channel._forget(self)
        for ended in self.protocol.fail_all(error.status, error.message):
            call = self.calls.pop(ended.stream_id, None)
            if call is not None:
                call._ended(ended)
        for call in list(self.calls.values()):
            call._ended(CallEnded(call._stream_id, error.status, error.message))
        self.calls.clear()
        self._on_window_opened(WindowOpened())
        self._wake_capacity()
        if self._ping_event is not None:
            self._ping_event.set()
        self._answer.set()
        if self._write_scope is not None:
            self._write_scope.cancel()
        if self._call_started is not None:
            self._call_started.set()

    async def wait_answered(self) -> None:
        """Wait for the server's first SETTINGS (or the connection's failure)."""
        await self._answer.wait()

    def add_call(self, stream_id: int, call: _Call) -> None:
        """Route the events of ``stream_id`` to ``call`` from now on."""
        self.calls[stream_id] = call
        started = self._call_started
        if started is not None:
            self._call_started = None
            started.set()

    async def close(self) -> None:
        """Send GOAWAY, end every call with UNAVAILABLE and stop the reader."""
        if self.error is None:
            self.protocol.close()
            with contextlib.suppress(GRPCError):
                await self.flush()
            self._terminate(GRPCError(Status.UNAVAILABLE, "channel closed"))
        self._scope.cancel()
        with anyio.CancelScope(shield=True):
            await self._done.wait()


class _ConnectAttempt:
    """A connection being opened; concurrent calls wait for the same attempt."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.connection: Optional[_Connection] = None
        self.error: Optional[GRPCError] = None


class Channel:
    """A gRPC channel to one server address over one HTTP/2 connection.

    The connection is opened on the first call and opened anew after it
    breaks; its reader (and keepalive) task runs in ``task_group``, which must
    outlive the channel. Close the channel with :meth:`aclose`.

    Args:
        host: the server's host name or IP address.
        port: the server's TCP port.
        task_group: the task group (of the channel's owner) that runs the
            connection's background tasks.
        config: connection, message size, TLS and keepalive settings.

    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        task_group: anyio.abc.TaskGroup,
        config: ChannelConfig = ChannelConfig(),  # noqa: B008 (frozen, immutable)
    ) -> None:
        self.host = host
        self.port = port
        self.config = config
        self._task_group = task_group
        self._connection: Optional[_Connection] = None
        self._attempt: Optional[_ConnectAttempt] = None
        self._closed = False
        self._keepalive_time = config.keepalive_time
        # IPv6 literals are bracketed in :authority.
        host_part = f"[{host}]" if ":" in host else host
        self._authority = f"{host_part}:{port}"

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        host: str,
        port: int,
        *,
        config: ChannelConfig = ChannelConfig(),  # noqa: B008
    ) -> AsyncIterator[Channel]:
        """Async context manager: a channel with its own task group, closed on exit."""
        async with anyio.create_task_group() as task_group:
            channel = cls(host, port, task_group=task_group, config=config)
            try:
                yield channel
            finally:
                await channel.aclose()

    @property
    def connected(self) -> bool:
        """Whether a usable HTTP/2 connection is open right now."""
        connection = self._connection
        return connection is not None and connection.usable

    @property
    def active_calls(self) -> int:
        """Number of calls in progress on the current connection."""
        connection = self._connection
        return 0 if connection is None else len(connection.calls)

    async def aclose(self) -> None:
        """Close the connection; calls in progress end with UNAVAILABLE.

        New calls on a closed channel fail with UNAVAILABLE too.
        """
        self._closed = True
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.aclose()

    # -- calls -----------------------------------------------------------------------

    async def unary_unary(
        self,
        path: str,
        request: bytes,
        *,
        timeout: Optional[float] = None,
        metadata: MetadataArg = None,
    ) -> bytes:
        """Make a unary call: send ``request``, return the response message.

        Args:
            path: the method, ``/package.Service/Method``.
            request: the serialized request message.
            timeout: seconds until the call fails with DEADLINE_EXCEEDED (and is
                cancelled on the server); ``None`` for no deadline.
            metadata: custom request metadata, ``(key, value)`` pairs; values of
                ``-bin`` keys are bytes.

        Raises:
            GRPCError: the call did not end with OK; UNAVAILABLE if the server
                could not be reached or the connection broke, DEADLINE_EXCEEDED
                when the timeout passed, RESOURCE_EXHAUSTED if a message was
                larger than the configured maximum.

        """
        call = _Call(self, path, timeout, metadata)
        try:
            await call._start(request, True)
            while call._end is None:
                if call._connection.protocol.want_message(call._stream_id):
                    await call._connection.flush()
                await call._wait()
            end = call._end
            if end.status is not _OK:
                raise GRPCError(end.status, end.message, end.trailers, end.not_processed)
            messages = call._messages
            if len(messages) != 1:
                raise GRPCError(
                    Status.INTERNAL,
                    f"unary call got {len(messages)} response messages",
                    end.trailers,
                )
            return messages.popleft().data
        finally:
            if call._end is None or call._messages:
                await call._abandon()

    def unary_stream(
        self,
        path: str,
        request: bytes,
        *,
        timeout: Optional[float] = None,
        metadata: MetadataArg = None,
    ) -> UnaryStreamCall:
        """Start a server-streaming call; use as ``async with``.

        The context manager yields a :class:`UnaryStreamCall`: an async iterator
        of response messages. Leaving the block before the server ended the
        call cancels it (RST_STREAM CANCEL). Arguments and errors are those of
        :meth:`unary_unary`; errors are raised from the iteration.
        """
        return UnaryStreamCall(_Call(self, path, timeout, metadata), request)

    def stream_stream(
        self,
        path: str,
        *,
        timeout: Optional[float] = None,
        metadata: MetadataArg = None,
    ) -> StreamStreamCall:
        """Start a bidirectional-streaming call; use as ``async with``.

        The context manager yields a :class:`StreamStreamCall` to send messages
        on (``send_message``, then ``end``) while receiving responses.
        Leaving the block before the server ended the call cancels it.
        Arguments and errors are those of :meth:`unary_unary`.
        """
        return StreamStreamCall(_Call(self, path, timeout, metadata))

    # -- connections ----------------------------------------------------------------

    async def _get_connection(self) -> _Connection:
        while True:
            if self._closed:
                raise GRPCError(Status.UNAVAILABLE, "channel closed")
            connection = self._connection
            if connection is not None and connection.usable:
                return connection
            attempt = self._attempt
            if attempt is not None:
                await attempt.done.wait()
                if attempt.error is not None:
                    raise attempt.error
                continue
            attempt = self._attempt = _ConnectAttempt()
            try:
                connection = await self._connect()
                if self._closed:  # aclose() ran while we were connecting
                    await connection.close()
                    raise GRPCError(Status.UNAVAILABLE, "channel closed")
                attempt.connection = self._connection = connection
            except GRPCError as exc:
                attempt.error = exc
                raise
            finally:
                self._attempt = None
                attempt.done.set()

    async def _connect(self) -> _Connection:
        config = self.config
        where = f"{self._authority}"
        ssl_context = config.ssl_context
        backend = current_backend()
        stream: Optional[anyio.abc.ByteStream] = None
        asyncio_socket: Optional[AsyncioSocket] = None
        # One bound for TCP, TLS, our preface and the server's SETTINGS.
        deadline = anyio.current_time() + config.connect_timeout
        try:
            with anyio.fail_after(config.connect_timeout):
                if ssl_context is None and backend == "asyncio":
                    asyncio_socket = await connect_asyncio(self.host, self.port)
                elif ssl_context is None:
                    stream = await anyio.connect_tcp(self.host, self.port)
                else:
                    ssl_context.set_alpn_protocols(["h2"])
                    stream = await anyio.connect_tcp(
                        self.host,
                        self.port,
                        ssl_context=ssl_context,
                        tls_hostname=config.server_hostname or self.host,
                        tls_standard_compatible=False,
                    )
                    alpn = stream.extra(TLSAttribute.alpn_protocol, None)
                    if alpn not in (None, "h2"):
                        await anyio.aclose_forcefully(stream)
                        raise GRPCError(
                            Status.UNAVAILABLE,
                            f"{where} negotiated ALPN {alpn!r}, not h2",
                        )
        except TimeoutError:
            raise GRPCError(
                Status.UNAVAILABLE,
                f"timed out connecting to {where} after {config.connect_timeout} s",
            ) from None
        except _CONNECTION_ERRORS as exc:
            why = _describe_failure(exc, tls=ssl_context is not None, answered=True)
            if isinstance(exc, anyio.EndOfStream):  # only TLS handshakes raise it here
                why = "the server closed the connection during the TLS handshake"
            raise GRPCError(_failure_status(exc), f"failed to connect to {where}: {why}") from exc
        protocol = ClientProtocol(
            authority=self._authority,
            scheme="http" if ssl_context is None else "https",
            user_agent=config.user_agent,
            max_receive_message_length=config.max_receive_message_length,
            stream_window=config.stream_window_size,
            connection_window=config.connection_window_size,
        )
        protocol.initiate()
        raw_socket = None
        if stream is not None and ssl_context is None and backend == "trio":
            raw_socket = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        connection = _Connection(
            self,
            stream,
            protocol,
            waiter=waiter_for(backend),
            asyncio_socket=asyncio_socket,
            raw_socket=raw_socket,
        )
        await self._task_group.start(connection.run)
        try:
            with anyio.move_on_after(deadline - anyio.current_time()):
                await connection.flush()
                await connection.wait_answered()
        except GRPCError:
            pass  # reported below, from the connection's error
        if connection.error is not None:
            error = connection.error
            raise GRPCError(error.status, f"failed to connect to {where}: {error.message}")
        if not connection.answered:
            await connection.close()
            raise GRPCError(
                Status.UNAVAILABLE,
                f"timed out connecting to {where} after {config.connect_timeout} s: "
                "the server sent no HTTP/2 SETTINGS",
            )
        return connection

    def _forget(self, connection: _Connection) -> None:
        """A connection takes no new calls; the next call opens a new one."""
        if self._connection is connection:
            self._connection = None

    def _too_many_pings(self) -> None:
        # As grpc clients do: the server's policy is stricter than ours.
        if self._keepalive_time is not None:
            self._keepalive_time *= 2


class _Call:
    """The state of one call, shared by the three call shapes."""

    __slots__ = (
        "_channel",
        "_connection",
        "_deadline",
        "_end",
        "_messages",
        "_metadata",
        "_path",
        "_stream_id",
        "_timeout",
        "_waiter",
        "initial_metadata",
    )

    def __init__(
        self,
        channel: Channel,
        path: str,
        timeout: Optional[float],
        metadata: MetadataArg,
    ) -> None:
        self._channel = channel
        self._path = path
        self._timeout = timeout
        self._metadata = encode_metadata(metadata) if metadata else ()
        self._deadline = math.inf if timeout is None else anyio.current_time() + timeout
        self._messages: Deque[MessageReceived] = collections.deque()
        self._end: Optional[CallEnded] = None
        # What the connection's waiter wakes this call's task with.
        self._waiter: Any = None
        self._stream_id = 0
        self.initial_metadata: Optional[Metadata] = None

    async def _start(self, request: Optional[bytes], end: bool) -> None:
        """Open the stream, send the headers and, if given, the first message."""
        channel = self._channel
        max_send = channel.config.max_send_message_length
        if request is not None and len(request) > max_send:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"request message larger than max ({len(request)} > {max_send})",
            )
        deadline = self._deadline
        connection = channel._connection
        if connection is None or not connection.protocol.can_start_call:
            connection = await self._wait_for_connection()
        timeout = None
        if self._timeout is not None:
            timeout = deadline - anyio.current_time()
            if timeout <= 0:
                raise GRPCError(
                    Status.DEADLINE_EXCEEDED,
                    "deadline exceeded before the call started",
                )
        protocol = connection.protocol
        self._connection = connection
        stream_id = self._stream_id = protocol.start_call(
            self._path, timeout=timeout, metadata=self._metadata
        )
        connection.add_call(stream_id, self)
        try:
            if request is not None:
                data = _frame(request)
                sent = protocol.send_data(stream_id, data, end)
                if sent < len(data):
                    await self._send_rest(data, sent, end)
                    return
            await connection.flush()
        except BaseException:
            await self._abandon()
            raise

    async def _wait_for_connection(self) -> _Connection:
        """Connect if needed, and wait for a free stream (max concurrent streams)."""
        channel = self._channel
        with anyio.CancelScope(deadline=self._deadline) as scope:
            connection = await channel._get_connection()
            while not connection.protocol.can_start_call:
                if not connection.usable:
                    connection = await channel._get_connection()
                else:  # SETTINGS_MAX_CONCURRENT_STREAMS reached: queue
                    await connection.wait_capacity()
            return connection
        assert scope.cancelled_caught
        raise GRPCError(Status.DEADLINE_EXCEEDED, "deadline exceeded before the call started")

    async def _send(self, payload: bytes, end: bool) -> None:
        """Send one message, waiting for flow-control window as needed."""
        max_send = self._channel.config.max_send_message_length
        if len(payload) > max_send:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"message larger than max ({len(payload)} > {max_send})",
            )
        await self._check()
        data = _frame(payload)
        sent = self._connection.protocol.send_data(self._stream_id, data, end)
        if sent < len(data):
            await self._send_rest(data, sent, end)
        else:
            await self._connection.flush_soon()

    async def _send_rest(self, data: bytes, sent: int, end: bool) -> None:
        connection = self._connection
        protocol = connection.protocol
        view = memoryview(data)
        total = len(data)
        while sent < total:
            await connection.flush()
            if protocol.send_window(self._stream_id) <= 0:
                with anyio.CancelScope(deadline=self._deadline):
                    await connection.wait_window()
            await self._check()
            sent += protocol.send_data(self._stream_id, view[sent:], end)
        await connection.flush()

    async def _check(self) -> None:
        """Raise if the call failed or its deadline passed."""
        if self._end is None and self._deadline != math.inf and self._expired():
            await self._expire()
        end = self._end
        if end is not None and end.status is not _OK:
            raise GRPCError(end.status, end.message, end.trailers, end.not_processed)

    async def _expire(self) -> None:
        """The deadline passed: reset the stream, end with DEADLINE_EXCEEDED."""
        connection = self._connection
        if connection.protocol.cancel(self._stream_id):
            connection.calls.pop(self._stream_id, None)
            connection._wake_capacity()
        self._ended(CallEnded(self._stream_id, Status.DEADLINE_EXCEEDED, "deadline exceeded"))
        # Messages that arrived in time but were not read are not delivered
        # (the call is over: their credit is moot).
        self._messages.clear()
        with anyio.CancelScope(shield=True), contextlib.suppress(GRPCError):
            await connection.flush()

    def _expired(self) -> bool:
        return self._connection.waiter.clock() >= self._deadline

    async def _wait(self) -> None:
        """Wait for the next event on this call, honouring the deadline."""
        await self._connection.waiter.wait(self, self._deadline)
        if self._end is None and self._deadline != math.inf and self._expired():
            await self._expire()

    def _ended(self, event: CallEnded) -> None:
        if self._end is None:
            self._end = event
        if self._waiter is not None:
            connection = self._connection
            connection.waiter.wake(self)
            connection._woke = True

    async def _receive(self) -> bytes:
        while True:
            if self._deadline != math.inf and self._end is None and self._expired():
                # Checked here too: a stream that never makes us wait would
                # otherwise outlive its deadline.
                await self._expire()
            messages = self._messages
            if messages:
                message = messages.popleft()
                if self._connection.protocol.consumed(self._stream_id, message.credit):
                    # A broken connection surfaces on the next receive; this
                    # message is delivered.
                    with contextlib.suppress(GRPCError):
                        await self._connection.flush()
                return message.data
            end = self._end
            if end is not None:
                if end.status is _OK:
                    raise StopAsyncIteration
                raise GRPCError(end.status, end.message, end.trailers, end.not_processed)
            if self._connection.protocol.want_message(self._stream_id):
                with contextlib.suppress(GRPCError):
                    await self._connection.flush()
            await self._wait()

    async def _abandon(self) -> None:
        """Leave the call: reset it if still running, drop unread messages."""
        if self._stream_id == 0:
            return  # never started
        connection = self._connection
        protocol = connection.protocol
        if self._end is None:
            if protocol.cancel(self._stream_id):
                connection.calls.pop(self._stream_id, None)
                connection._wake_capacity()
            self._ended(CallEnded(self._stream_id, Status.CANCELLED, "call cancelled"))
        self._messages.clear()
        with anyio.CancelScope(shield=True), contextlib.suppress(GRPCError):
            await connection.flush()

    @property
    def trailing_metadata(self) -> Optional[Metadata]:
        end = self._end
        return None if end is None else end.trailers


class _StreamingCall:
    """What server-streaming and bidirectional calls share: receiving."""

    __slots__ = ("_call",)

    def __init__(self, call: _Call) -> None:
        self._call = call

    async def receive(self) -> bytes:
        """Return the next response message.

        Raises:
            StopAsyncIteration: the server ended the call with OK.
            GRPCError: the call failed.

        """
        return await self._call._receive()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        return await self._call._receive()

    @property
    def initial_metadata(self) -> Optional[Metadata]:
        """The response headers' metadata, once received (None before)."""
        return self._call.initial_metadata

    @property
    def trailing_metadata(self) -> Optional[Metadata]:
        """The trailers' metadata once the call ended (None before)."""
        return self._call.trailing_metadata

    @property
    def status(self) -> Optional[Status]:
        """The call's final status once it ended, else None."""
        end = self._call._end
        return None if end is None else end.status

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        call = self._call
        if call._end is None or call._messages:
            await call._abandon()


class UnaryStreamCall(_StreamingCall):
    """A server-streaming call: an async iterator of response messages.

    Use ``async with channel.unary_stream(...) as stream: async for m in stream``.
    """

    __slots__ = ("_request",)

    def __init__(self, call: _Call, request: bytes) -> None:
        super().__init__(call)
        self._request = request

    async def __aenter__(self) -> Self:
        await self._call._start(self._request, True)
        return self


class StreamStreamCall(_StreamingCall):
    """A bidirectional-streaming call.

    Send with :meth:`send_message` and half-close with :meth:`end`; receive
    with :meth:`receive` or ``async for``. Sending waits for flow-control
    window without holding up receiving.
    """

    __slots__ = ()

    async def __aenter__(self) -> Self:
        await self._call._start(None, False)
        return self

    async def send_message(self, message: bytes) -> None:
        """Send one request message, waiting for flow-control window if needed.

        Raises:
            GRPCError: the call already failed (its status), its deadline passed,
                or the message is larger than ``max_send_message_length``.

        """
        await self._call._send(message, False)

    async def end(self) -> None:
        """Half-close: tell the server no more messages will be sent."""
        call = self._call
        await call._check()
        call._connection.protocol.end_stream(call._stream_id)
        await call._connection.flush()
