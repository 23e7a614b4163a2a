"""One HTTP/2 connection: a transport, the sans-IO core, the calls by stream id, and its task.

All gRPC and HTTP/2 logic lives in :mod:`lbwire.grpc.protocol`; this module
moves bytes between a :class:`~lbwire.grpc._backends.Transport` and a
:class:`~lbwire.grpc.protocol.ClientProtocol`, and routes the core's events to
the calls through a class-to-handler table. It never asks which transport it
has.

* Received bytes reach :meth:`Connection.data_received` from the transport
  (its reader task, or the event loop's callback on asyncio).
* Writes have no lock: whichever task finds no write in progress becomes the
  writer and drains the core's outbound buffer until it is empty (bytes
  queued by other tasks meanwhile included), shielded from its caller's
  cancellation since a half-written frame would corrupt the connection for
  every call, but not from the connection's end. Other tasks return at once:
  their bytes are already queued, in order. Where the transport takes the
  bytes without waiting, the writer does not wait at all.
* A call never holds more than its stream window of received data: the
  flow-control credit of a message is returned only when the application
  takes it, or waits for it (see the protocol module).
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Callable, Dict, Optional

import anyio
import anyio.abc
import anyio.lowlevel

from ._backends import Backend, Transport, TransportSink
from ._failures import CONNECTION_ERRORS, describe_failure, failure_status
from .events import (
    WINDOW_OPENED,
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
from .keepalive import KeepalivePolicy, KeepaliveSchedule
from .protocol import ClientProtocol
from .status import GRPCError, Status

if TYPE_CHECKING:
    from ._call import Call

__all__ = ["Connection"]

_PING_DATA = b"lbwire\x00\x00"
# The most written at once by a write that waits: `write_stall_timeout`
# counts from the last part the peer took.
_WRITE_CHUNK = 64 * 1024


class Connection(TransportSink):
    """One HTTP/2 connection and the calls on it.

    Args:
        transport: the connected transport.
        protocol: the core, its preface already queued.
        backend: the running event loop's clock and parking.
        keepalive: the channel's keepalive settings (``None``: no PINGs).
        on_unusable: called once the connection takes no new calls (GOAWAY,
            failure, close), so the channel opens the next one.
        write_stall_timeout: see :class:`~lbwire.grpc.ChannelConfig`.

    Attributes:
        transport: the transport (for tests and diagnostics: ``writes``).
        protocol: the core (for tests and diagnostics: windows, calls).
        backend: the running event loop's clock and parking.
        calls: the calls in progress, by stream id.
        error: set once the connection failed: what ended its calls.
        answered: whether the server's first SETTINGS arrived.

    """

    def __init__(
        self,
        transport: Transport,
        protocol: ClientProtocol,
        backend: Backend,
        *,
        keepalive: Optional[KeepalivePolicy],
        on_unusable: Callable[[Connection], None],
        write_stall_timeout: float = 5.0,
    ) -> None:
        self.transport = transport
        self.protocol = protocol
        self.backend = backend
        self.calls: Dict[int, Call] = {}
        self.error: Optional[GRPCError] = None
        self.answered = False
        self.woke = False
        self._on_unusable = on_unusable
        #: Seconds a write may go without progress (`ChannelConfig.write_stall_timeout`).
        self.write_stall_timeout = write_stall_timeout
        self._keepalive = keepalive
        self._schedule: Optional[KeepaliveSchedule] = None
        if keepalive is not None:
            self._schedule = KeepaliveSchedule(
                keepalive.time, without_calls=keepalive.without_calls, now=backend.clock()
            )
        self._writing = False
        # Bytes flush_nowait() could not hand over; flush() sends them first.
        self._unsent = b""
        # Cancels the write in progress when the connection is given up (a
        # write to a peer that stopped reading never returns otherwise).
        self._write_scope: Optional[anyio.CancelScope] = None
        self._window_event: Optional[anyio.Event] = None
        self._capacity_event: Optional[anyio.Event] = None
        self._ping_event: Optional[anyio.Event] = None
        # Set once the server's SETTINGS arrived or the connection failed.
        self._answer = anyio.Event()
        # (keepalive) Set when a call starts while the keepalive task waits
        # for one: pings are only due while calls are in progress.
        self._call_started: Optional[anyio.Event] = None
        # (keepalive) The server answered a PING with GOAWAY too_many_pings.
        self._pings_refused = False
        # The scope of the running `run`, cancelled to stop it for good.
        self._scope = anyio.CancelScope()
        self._running = False
        self._done = anyio.Event()
        #: Whether `run` may be cancelled from outside without ending the
        #: connection (see `run`): set by a channel whose owner lends it a
        #: task group only while it waits (`Channel.lend`).
        self.lent = False
        # (lent) The task group to run in once a call waits (`run_when_waited`).
        self._lent_to: Optional[anyio.abc.TaskGroup] = None
        self._handlers: Dict[type, Callable[[Event], None]] = {
            MessagesReceived: self._on_messages,  # type: ignore[dict-item]
            CallEnded: self._on_call_ended,  # type: ignore[dict-item]
            ResponseHeaders: self._on_headers,  # type: ignore[dict-item]
            WindowOpened: self._on_window_opened,
            SettingsChanged: self._on_settings_changed,
            PingAcknowledged: self._on_ping_ack,
            GoAwayReceived: self._on_goaway,  # type: ignore[dict-item]
            ConnectionClosed: self._on_connection_closed,  # type: ignore[dict-item]
        }

    @property
    def usable(self) -> bool:
        """Whether new calls may be started on this connection."""
        return self.error is None and not self.protocol.draining

    # -- the connection's task ---------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the transport (and keepalive) until the connection ends or :meth:`close`.

        A :attr:`lent` connection's task may also be cancelled from outside:
        the connection then stays open, and a later ``run`` takes up where
        this one stopped (what arrived meanwhile waits in the transport).
        """
        if self._done.is_set():  # closed while no task ran it
            task_status.started()
            return
        scope = self._scope = anyio.CancelScope()
        self._running = True
        paused = False
        try:
            with scope:
                task_status.started()
                async with anyio.create_task_group() as tasks:
                    if self._schedule is not None:
                        tasks.start_soon(self._keepalive_loop, self._schedule)
                    try:
                        await self.transport.run(self)
                    except Exception as exc:
                        self._terminate(GRPCError(Status.UNAVAILABLE, f"internal error: {exc!r}"))
                        raise
                    # Before the task group's exit (a checkpoint): a flush
                    # failing meanwhile must report this cause, not its echo.
                    self._terminate(GRPCError(Status.UNAVAILABLE, self._end_reason()))
                    tasks.cancel_scope.cancel()
        except anyio.get_cancelled_exc_class():
            paused = self.lent and self.error is None and not scope.cancel_called
            raise
        finally:
            self._running = False
            if not paused:
                await self._finish()

    async def _finish(self) -> None:
        self._terminate(GRPCError(Status.UNAVAILABLE, self._end_reason()))
        with anyio.CancelScope(shield=True):
            await self.transport.aclose()
        self._done.set()

    def _end_reason(self) -> str:
        if self.error is not None:
            return self.error.message
        if self.protocol.draining and not self.calls:
            return "connection drained after GOAWAY"
        return "connection closed"

    async def _keepalive_loop(self, schedule: KeepaliveSchedule) -> None:
        policy = self._keepalive
        assert policy is not None
        while not self._pings_refused:
            # The policy doubles its time after a GOAWAY "too_many_pings".
            schedule.interval = policy.time
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
            with anyio.move_on_after(policy.timeout):
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

    # -- TransportSink: what the transport calls ----------------------------------

    def data_received(self, data: bytes) -> None:
        """Hand received bytes to the core and its events to the calls."""
        if self._schedule is not None:
            self._schedule.received(self.backend.clock())
        self.woke = False
        handlers = self._handlers
        for event in self.protocol.receive_data(data):
            handlers[event.__class__](event)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        """The peer closed the connection, or it broke: every call ends."""
        if exc is None:
            reason = "connection closed by peer"
            if not self.answered:
                reason += f": {self._describe(anyio.EndOfStream())}"
            self._terminate(GRPCError(Status.UNAVAILABLE, reason))
        else:
            self._terminate(self._lost(exc))

    @property
    def has_data_to_send(self) -> bool:
        """Whether the core queued bytes for the peer."""
        return self.protocol.has_data_to_send

    @property
    def finished(self) -> bool:
        """Whether the connection is over: failed, or drained after GOAWAY."""
        return self.error is not None or (self.protocol.draining and not self.calls)

    async def flush(self) -> None:
        """Send everything the core has queued (see the module docstring).

        Raises:
            GRPCError: the connection failed (UNAVAILABLE, or what ended it).

        """
        protocol = self.protocol
        if self._writing or not (protocol.has_data_to_send or self._unsent):
            return
        transport = self.transport
        data = protocol.data_to_send()
        if self._unsent:
            data, self._unsent = self._unsent + data, b""
        try:
            sent = transport.write_nowait(data)
            if sent == len(data):
                if transport.backlogged:
                    await transport.drained()
                return
            self._writing = True
            # Shielded from the caller's cancellation (a half-written frame
            # would corrupt the connection), not from the connection's end,
            # nor beyond `write_stall_timeout` without progress: a peer that
            # takes nothing (frozen) would hold the caller until keepalive.
            stall = self.write_stall_timeout
            with anyio.CancelScope(shield=True), anyio.CancelScope() as scope:
                self._write_scope = scope
                if self.error is not None:
                    scope.cancel()
                data = data[sent:]
                while data:
                    for start in range(0, len(data), _WRITE_CHUNK):
                        scope.deadline = anyio.current_time() + stall
                        await transport.write(data[start : start + _WRITE_CHUNK])
                    data = protocol.data_to_send()
            self._write_scope = None
            if scope.cancelled_caught:
                if self.error is None:
                    self._terminate(
                        GRPCError(
                            Status.UNAVAILABLE,
                            f"connection lost: the server took nothing for {stall} s "
                            "(write_stall_timeout)",
                        )
                    )
                    self._scope.cancel()
                assert self.error is not None
                # A caller cancelled meanwhile learns of that, not of this.
                await anyio.lowlevel.checkpoint_if_cancelled()
                raise GRPCError(self.error.status, self.error.message)
        except CONNECTION_ERRORS as exc:
            self._terminate(self._lost(exc))
            self._scope.cancel()
            # The first failure names the cause (the reader may have seen the
            # server's TLS alert that broke this write).
            first = self.error
            assert first is not None
            raise GRPCError(first.status, first.message) from exc
        finally:
            self._writing = False

    def flush_nowait(self) -> None:
        """Hand what the core has queued to the transport without waiting."""
        if self._writing or not self.protocol.has_data_to_send:
            return
        data = self.protocol.data_to_send()
        try:
            sent = self.transport.write_nowait(data)
        except CONNECTION_ERRORS as exc:
            self._terminate(self._lost(exc))
            self._scope.cancel()
            return
        if sent < len(data):
            self._unsent += data[sent:]
            self.transport.flush_soon(self)

    # -- event handlers (run for the transport) -----------------------------------

    def _on_messages(self, event: MessagesReceived) -> None:
        call = self.calls.get(event.stream_id)
        if call is not None and call.deliver(event):
            self.woke = True
        # (No call: it was abandoned, and its credit is moot.)

    def _on_call_ended(self, event: CallEnded) -> None:
        call = self.calls.pop(event.stream_id, None)
        if call is not None and call.end_with(event):
            self.woke = True
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
        if event.debug_data == b"too_many_pings" and self._keepalive is not None:
            # The next connection pings at the doubled interval; this one is
            # not pinged again: the server closes it, some servers only after
            # a while, and every further PING would be one more offence.
            self._keepalive.too_many_pings()
            self._pings_refused = True
            if self._call_started is not None:
                self._call_started.set()
        self._on_unusable(self)
        self._wake_capacity()

    def _on_connection_closed(self, event: ConnectionClosed) -> None:
        self._terminate(GRPCError(Status.UNAVAILABLE, event.reason))

    # -- used by the channel and its calls -------------------------------------------

    def add_call(self, stream_id: int, call: Call) -> None:
        """Route the events of ``stream_id`` to ``call`` from now on."""
        self.calls[stream_id] = call
        started = self._call_started
        if started is not None:
            self._call_started = None
            started.set()

    def cancel_call(self, stream_id: int) -> None:
        """Reset a call's stream (RST_STREAM CANCEL) if still in progress; stop routing it."""
        if self.protocol.cancel(stream_id):
            self.calls.pop(stream_id, None)
            self._wake_capacity()

    async def flush_soon(self) -> None:
        """Like :meth:`flush`, but merge this write with others queued meanwhile.

        For messages of streaming calls: a task publishing many messages in a
        row (or many tasks woken together) then costs one write for all of
        them instead of one each. The write happens as soon as the running
        task yields; flow control still bounds what waits.
        """
        if not self.protocol.has_data_to_send:
            return
        transport = self.transport
        if transport.backlogged:
            await transport.drained()
        transport.flush_soon(self)

    async def wait_answered(self) -> None:
        """Wait for the server's first SETTINGS (or the connection's failure)."""
        await self._answer.wait()

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
        return GRPCError(failure_status(exc), f"connection lost: {self._describe(exc)}")

    def _describe(self, exc: BaseException) -> str:
        return describe_failure(exc, tls=self.transport.tls, answered=self.answered)

    def _terminate(self, error: GRPCError) -> None:
        """The connection is unusable: every call on it ends with ``error``."""
        if self.error is not None:
            return
        self.error = error
        self._on_unusable(self)
        for ended in self.protocol.fail_all(error.status, error.message):
            call = self.calls.pop(ended.stream_id, None)
            if call is not None:
                call.end_with(ended)
        for stream_id, call in list(self.calls.items()):
            call.end_with(CallEnded(stream_id, error.status, error.message))
        self.calls.clear()
        self._on_window_opened(WINDOW_OPENED)
        self._wake_capacity()
        if self._ping_event is not None:
            self._ping_event.set()
        self._answer.set()
        if self._write_scope is not None:
            self._write_scope.cancel()
        if self._call_started is not None:
            self._call_started.set()

    async def close(self) -> None:
        """Send GOAWAY, end every call with UNAVAILABLE and stop the connection's task."""
        if self.error is None:
            self.protocol.close()
            with contextlib.suppress(GRPCError):
                await self.flush()
            self._terminate(GRPCError(Status.UNAVAILABLE, "channel closed"))
        self._scope.cancel()
        if not self._running and not self._done.is_set():
            await self._finish()  # (a lent connection no task runs now)
        with anyio.CancelScope(shield=True):
            await self._done.wait()

    def lend(self, task_group: Optional[anyio.abc.TaskGroup]) -> None:
        """(lent) Run in ``task_group`` once a call waits (None: the group ended).

        Not before: a subscription that finds its next message already
        received costs its owner no task for it.
        """
        self.lent = True
        self._lent_to = task_group

    def run_when_waited(self) -> None:
        """A call is about to wait: a lent connection no task runs starts running."""
        task_group, self._lent_to = self._lent_to, None
        if task_group is not None and not self._running and not self._done.is_set():
            task_group.start_soon(self.run)

    @property
    def running(self) -> bool:
        """Whether a task runs the connection now (see :meth:`run`)."""
        return self._running
