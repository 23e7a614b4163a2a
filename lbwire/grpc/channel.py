"""A gRPC channel: calls to one server address over one HTTP/2 connection at a time.

The channel opens the connection on the first call and anew after it breaks
(:mod:`lbwire.grpc._connection`), over a transport that fits the running
backend (:mod:`lbwire.grpc._backends`), and hands each call a
:class:`~lbwire.grpc._call.Call`.
"""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import TYPE_CHECKING, AsyncIterator, Awaitable, Callable, Optional, Type

import anyio
import anyio.abc

from . import _backends
from ._backends import Transport
from ._call import Call, MetadataArg, StreamStreamCall, UnaryStreamCall
from ._connection import Connection
from ._failures import CONNECTION_ERRORS, describe_failure, failure_status
from .config import ChannelConfig
from .keepalive import KeepalivePolicy
from .protocol import ClientProtocol
from .proxy import HttpProxy
from .status import GRPCError, Status

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Channel", "StreamStreamCall", "UnaryStreamCall"]

#: Opens a channel's transport (see :class:`Channel`'s ``connect_transport``).
TransportFactory = Callable[[], Awaitable[Transport]]


class _ConnectAttempt:
    """A connection being opened; concurrent calls wait for the same attempt."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.connection: Optional[Connection] = None
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
        connect_transport: opens the transport of each connection; by default
            TCP (and TLS) to ``host:port``. Tests pass in-memory transports
            (:func:`lbwire.grpc.testing.memory_transport`).

    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        task_group: anyio.abc.TaskGroup,
        config: ChannelConfig = ChannelConfig(),  # noqa: B008 (frozen, immutable)
        connect_transport: Optional[TransportFactory] = None,
    ) -> None:
        self.host = host
        self.port = port
        self.config = config
        self._task_group = task_group
        self._lent = False
        self._connection: Optional[Connection] = None
        self._attempt: Optional[_ConnectAttempt] = None
        self._closed = False
        self._connect_transport = connect_transport
        self._keepalive: Optional[KeepalivePolicy] = None
        if config.keepalive_time is not None:
            self._keepalive = KeepalivePolicy(
                config.keepalive_time,
                config.keepalive_timeout,
                without_calls=config.keepalive_without_calls,
            )
        # IPv6 literals are bracketed in :authority.
        host_part = f"[{host}]" if ":" in host else host
        self._authority = f"{host_part}:{port}"
        proxy = config.proxy
        self._proxy = proxy if proxy is not None and proxy.used_for(host) else None

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        host: str,
        port: int,
        *,
        config: ChannelConfig = ChannelConfig(),  # noqa: B008
        connect_transport: Optional[TransportFactory] = None,
    ) -> AsyncIterator[Channel]:
        """Async context manager: a channel with its own task group, closed on exit."""
        async with anyio.create_task_group() as task_group:
            channel = cls(
                host,
                port,
                task_group=task_group,
                config=config,
                connect_transport=connect_transport,
            )
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

    @property
    def connection(self) -> Optional[Connection]:
        """The current connection, if one is open (for tests and diagnostics).

        Its ``protocol`` reports windows and calls, its ``transport`` the
        writes made; neither is to be changed from outside.
        """
        return self._connection

    @property
    def proxy(self) -> Optional[HttpProxy]:
        """The HTTP proxy the connections go through (None: direct, or ``no_proxy``)."""
        return self._proxy

    @property
    def keepalive_time(self) -> Optional[float]:
        """The keepalive interval now in use (doubled after "too_many_pings"), or None."""
        return None if self._keepalive is None else self._keepalive.time

    def lend(self, task_group: anyio.abc.TaskGroup) -> None:
        """Run the connection's tasks in ``task_group`` until it ends, not any longer.

        For an owner that has no task group lasting as long as the channel
        (an async generator must not hold one across ``yield``): it lends
        one for each wait. When that group ends, the connection's tasks stop
        but the connection stays open; after the next ``lend`` they run again
        once a call waits.
        Close the channel with :meth:`aclose` as usual.
        """
        self._task_group = task_group
        self._lent = True
        connection = self._connection
        if connection is not None and connection.error is None and not connection.running:
            connection.lend(task_group)

    def unlend(self) -> None:
        """The task group given to :meth:`lend` ends (its tasks stopped)."""
        connection = self._connection
        if connection is not None:
            connection.lend(None)

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
        call = self._call(path, timeout, metadata)
        try:
            await call.start(request, True)
            return await call.unary_response()
        finally:
            await call.close()

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
        return UnaryStreamCall(self._call(path, timeout, metadata), request)

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
        return StreamStreamCall(self._call(path, timeout, metadata))

    def _call(self, path: str, timeout: Optional[float], metadata: MetadataArg) -> Call:
        return Call(
            path,
            timeout,
            metadata,
            max_send=self.config.max_send_message_length,
            connection=self._connection,
            connect=self._get_connection,
        )

    # -- connections ----------------------------------------------------------------

    async def _get_connection(self) -> Connection:
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

    async def _connect(self) -> Connection:
        config = self.config
        proxy = self._proxy
        where = self._authority
        if proxy is not None:  # (str(proxy) never shows the credentials)
            where = f"{where} through the HTTP proxy {proxy}"
        ssl_context = config.ssl_context
        # One bound for TCP, TLS, our preface and the server's SETTINGS.
        deadline = anyio.current_time() + config.connect_timeout
        try:
            with anyio.fail_after(config.connect_timeout):
                if self._connect_transport is not None:
                    transport = await self._connect_transport()
                else:
                    transport = await _backends.connect(
                        self.host,
                        self.port,
                        ssl_context=ssl_context,
                        server_hostname=config.server_hostname,
                        proxy=proxy,
                    )
        except TimeoutError:
            raise GRPCError(
                Status.UNAVAILABLE,
                f"timed out connecting to {where} after {config.connect_timeout} s",
            ) from None
        except GRPCError as exc:  # (the TLS server refused HTTP/2, the proxy failed)
            raise GRPCError(exc.status, f"failed to connect to {where}: {exc.message}") from exc
        except CONNECTION_ERRORS as exc:
            why = describe_failure(exc, tls=ssl_context is not None, answered=True)
            if isinstance(exc, anyio.EndOfStream):  # only TLS handshakes raise it here
                why = "the server closed the connection during the TLS handshake"
            raise GRPCError(failure_status(exc), f"failed to connect to {where}: {why}") from exc
        protocol = ClientProtocol(
            authority=self._authority,
            scheme="http" if ssl_context is None else "https",
            user_agent=config.user_agent,
            max_receive_message_length=config.max_receive_message_length,
            stream_window=config.stream_window_size,
            connection_window=config.connection_window_size,
        )
        protocol.initiate()
        connection = Connection(
            transport,
            protocol,
            _backends.running_backend(),
            keepalive=self._keepalive,
            on_unusable=self._forget,
            write_stall_timeout=config.write_stall_timeout,
        )
        connection.lent = self._lent
        try:
            await self._task_group.start(connection.run)
            with anyio.move_on_after(deadline - anyio.current_time()):
                await connection.flush()
                await connection.wait_answered()
        except GRPCError:
            pass  # reported below, from the connection's error
        except BaseException:
            # Cancelled (the call's deadline or the caller's scope ended the
            # set-up first): no one will use this connection, so close it
            # now rather than leave its socket to the channel's end.
            with anyio.CancelScope(shield=True):
                await connection.close()
            raise
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

    def _forget(self, connection: Connection) -> None:
        """A connection takes no new calls; the next call opens a new one."""
        if self._connection is connection:
            self._connection = None
