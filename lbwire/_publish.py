"""Publishing: request building, unary publishes, and the pipelined PublishAsync stream.

`Publisher` turns `LiftbridgeClient`'s publish arguments into requests and
sends them. Unary publishes go to any broker (the server forwards them to
NATS); a publish that failed is sent again only when the transport says the
server never began it (`LiftbridgeError.not_processed`), so no message is
stored twice. Pipelined publishes share one long-lived PublishAsync stream
per client (`PublishSession`); a reader task in the client's task group
dispatches each PublishResponse to the `PendingAck` of the same correlation
id, as go-liftbridge's PublishAsync does.
"""

from __future__ import annotations

import os
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterator,
    Dict,
    Generator,
    Iterable,
    Optional,
)

import anyio

from . import wire
from ._log import LazyLogger
from .compression import compress
from .error import (
    ErrorAckTimeout,
    ErrorDeadlineExceeded,
    ErrorInvalidArgument,
    ErrorMessageSizeExceeded,
    ErrorNotFound,
    ErrorUnavailable,
    LiftbridgeError,
    from_grpc_error,
    publish_async_error,
)
from .grpc import GRPCError
from .retry import retrying
from .types import Ack, AckPolicy, Partitioner

if TYPE_CHECKING:
    from anyio.abc import TaskGroup, TaskStatus

    from ._pool import ConnectionRegistry
    from ._routing import Router
    from .grpc import Channel

__all__ = ["PendingAck", "PublishSession", "Publisher"]

logger = LazyLogger("lbwire.publish")

_PATH = "/proto.API/PublishAsync"


def new_correlation_id() -> str:
    """32 random hex digits, like uuid.uuid4().hex, cheaper and without importing uuid."""
    return os.urandom(16).hex()


class Publisher:
    """Publishes for one client.

    Args:
        router: Where calls go.
        connections: For the PublishAsync stream's channel.
        options: The client, read for its publish options (compression,
            timeouts, partitioner, size limit), which users may change.
    """

    def __init__(self, router: Router, connections: ConnectionRegistry, options: Any) -> None:
        self.router = router
        self.connections = connections
        self.options = options
        self._session: Optional[PublishSession] = None
        self._session_lock: Optional[anyio.Lock] = None
        self._task_group: Optional[TaskGroup] = None

    def start(self, task_group: TaskGroup) -> None:
        """Run the PublishAsync reader in `task_group` from now on."""
        self._task_group = task_group
        self._session_lock = anyio.Lock()

    async def aclose(self) -> None:
        """End the PublishAsync stream; acks still awaited fail."""
        self._task_group = None
        session, self._session = self._session, None
        if session is not None:
            with anyio.CancelScope(shield=True):
                await session.aclose()

    # ------------------------------------------------------------------ requests

    def request(
        self,
        value: bytes,
        *,
        stream: Optional[str],
        key: Optional[bytes],
        partition: Optional[int],
        headers: Optional[Dict[str, bytes]],
        ack_inbox: Optional[str],
        correlation_id: Optional[str],
        ack_policy: AckPolicy,
        auto_compress: bool,
        expected_offset: Optional[int],
    ) -> wire.PublishRequest:
        """A PublishRequest, after checking every argument."""
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise ErrorInvalidArgument(f"Message value must be bytes, not {type(value).__name__}")
        try:
            ack_policy = AckPolicy(ack_policy)
        except ValueError:
            raise ErrorInvalidArgument(
                f"Unknown ack policy {ack_policy!r}: use AckPolicy.LEADER, ALL or NONE"
            ) from None
        value = bytes(value)
        out_headers: Dict[str, bytes] = {}
        options = self.options
        method = options.compression_method
        if auto_compress and method is not None and len(value) >= options.compression_threshold:
            value = compress(value, method)
            out_headers[options.encoding_header] = method.encode()
        if headers:
            for name, hvalue in headers.items():
                if not isinstance(name, str) or not isinstance(hvalue, (bytes, bytearray)):
                    raise ErrorInvalidArgument(
                        f"Header {name!r}: names must be str and values bytes"
                    )
                out_headers[name] = bytes(hvalue)
        if partition is not None and partition < 0:
            raise ErrorInvalidArgument(f"Partition must not be negative, not {partition}")
        if expected_offset is not None and expected_offset < 0:
            raise ErrorInvalidArgument(
                f"expected_offset must not be negative, not {expected_offset} "
                "(None skips the check)"
            )
        return wire.PublishRequest(
            key=key or b"",
            value=value,
            stream=stream or "",
            partition=partition or 0,
            headers=out_headers,
            ackInbox=ack_inbox or "",
            correlationId=correlation_id or "",
            ackPolicy=ack_policy,
            # -1 tells a stream with optimistic concurrency control not to
            # check; 0 would demand offset 0 (go-liftbridge sends -1 too).
            expectedOffset=-1 if expected_offset is None else expected_offset,
        )

    def encode(self, request: Any) -> bytes:
        """The request's encoding, refused when larger than `max_publish_size`."""
        encoded: bytes = request.encode()
        limit = self.options.max_publish_size
        if len(encoded) > limit:
            raise ErrorMessageSizeExceeded(
                f"Message of {len(encoded)} bytes exceeds max_publish_size "
                f"({limit} bytes); the server would refuse it"
            )
        return encoded

    async def partition(
        self,
        stream: str,
        key: Optional[bytes],
        value: bytes,
        partition: Optional[int],
        partitioner: Optional[Partitioner],
    ) -> Optional[int]:
        """`partition`, or the one the partitioner (argument or default) chooses."""
        partitioner = partitioner or self.options.partitioner
        if partition is not None or partitioner is None:
            return partition
        count = await self.router.partition_count(stream)
        chosen = partitioner(stream, key, bytes(value), count)
        if not 0 <= chosen < count:
            raise ErrorInvalidArgument(
                f"Partitioner chose partition {chosen} of {stream!r}, which has {count}"
            )
        return chosen

    # ------------------------------------------------------------------ unary

    async def publish(
        self, request: wire.PublishRequest, ack_timeout: Optional[float], wait_for_stream: bool
    ) -> Optional[Ack]:
        """Publish one request and wait for its ack (see `LiftbridgeClient.publish`)."""
        encoded = self.encode(request)
        wait = ack_timeout if ack_timeout is not None else self.options.ack_timeout
        # The server waits for the ack only when the call carries a deadline;
        # unacked publishes carry none, so it takes its fire-and-forget path.
        timeout = None if request.ackPolicy == AckPolicy.NONE else wait
        while True:
            try:
                response = await self._send(request, encoded, timeout)
            except ErrorDeadlineExceeded as exc:
                raise ErrorAckTimeout(
                    f"No ack for the message to {request.stream!r} within {wait} s"
                ) from exc
            except ErrorNotFound:
                if not wait_for_stream:
                    raise
                await self.router.wait_for_stream(request.stream)
                continue
            return response.ack

    async def _send(
        self, request: wire.PublishRequest, encoded: bytes, timeout: Optional[float]
    ) -> wire.PublishResponse:
        router = self.router

        async def attempt(failures: int) -> wire.PublishResponse:
            try:
                return await router.call(
                    router.any_broker(), "Publish", encoded, wire.PublishResponse, timeout=timeout
                )
            except ErrorUnavailable as exc:
                if exc.not_processed:
                    await router.refresh_quietly()
                raise

        # A publish that went out may be stored although its call then failed
        # (the broker died after forwarding it): sending it again could store
        # it twice. Only calls the transport knows the server never began
        # (GOAWAY beyond their stream, REFUSED_STREAM, no connection) are
        # sent again.
        try:
            return await retrying(attempt, self.router.policy, retry_if=_not_processed)
        except ErrorUnavailable as exc:
            if exc.not_processed:
                raise
            raise ErrorUnavailable(
                f"Connection lost while publishing to {request.stream!r}: the message may "
                f"or may not be stored, and was not sent again ({exc})",
                status=exc.status,
            ) from None

    async def publish_to_subject(
        self, request: wire.PublishToSubjectRequest, ack_timeout: Optional[float]
    ) -> Optional[Ack]:
        """Publish to a NATS subject (see `LiftbridgeClient.publish_to_subject`)."""
        encoded = self.encode(request)
        wait = ack_timeout if ack_timeout is not None else self.options.ack_timeout
        timeout = None if request.ackPolicy == AckPolicy.NONE else wait
        try:
            response = await self.router.call(
                self.router.any_broker(),
                "PublishToSubject",
                encoded,
                wire.PublishToSubjectResponse,
                timeout=timeout,
            )
        except ErrorDeadlineExceeded as exc:
            raise ErrorAckTimeout(
                f"No ack from subject {request.subject!r} within {wait} s"
            ) from exc
        return response.ack

    # ------------------------------------------------------------------ pipelined

    async def session(self) -> PublishSession:
        """The client's long-lived PublishAsync stream, opened on first use."""
        session = self._session
        if session is not None and not session.closed:
            # Open: no lock, whose checkpoint would cost every publish_async.
            return session
        if self._session_lock is None or self._task_group is None:
            raise RuntimeError(
                "LiftbridgeClient is not open: use 'async with LiftbridgeClient(...) as client'"
            )
        async with self._session_lock:
            session = self._session
            if session is None or session.closed:
                if self._task_group is None:
                    raise RuntimeError("LiftbridgeClient is not open")
                channel = self.connections.channel(self.router.any_broker())
                session = PublishSession(channel, self._task_group)
                await session.start()
                self._session = session
            return session

    async def publish_async(self, request: wire.PublishRequest, timeout: float) -> PendingAck:
        """Send one request on the PublishAsync stream; the result awaits its ack."""
        if not request.correlationId:
            request.correlationId = new_correlation_id()
        encoded = self.encode(request)
        session = await self.session()
        return await session.send(request, encoded, timeout)

    async def publish_bulk(
        self, requests: Iterable[wire.PublishRequest], wait: bool
    ) -> AsyncIterator[wire.PublishResponse]:
        """Pipeline `requests`, then yield their responses in order (see the client's)."""
        session = await self.session()
        timeout = self.options.publish_async_ack_timeout
        pending = []
        for request in requests:
            if not request.correlationId:
                request.correlationId = new_correlation_id()
            encoded = self.encode(request)
            pending.append(await session.send(request, encoded, timeout))
        for item in pending:
            try:
                ack = await item
            except ErrorAckTimeout:
                if wait:
                    raise
                return
            if ack is not None:
                yield wire.PublishResponse(ack=ack, correlationId=item.correlation_id)


def _not_processed(error: LiftbridgeError) -> bool:
    return error.not_processed


class PendingAck:
    """The outcome of one pipelined publish: `await` it for the Ack.

    Awaiting returns the Ack (None for AckPolicy.NONE) and raises
    `PublishAsyncError` when the server refused the message,
    `ErrorAckTimeout` when no ack came within the ack timeout, and
    `ErrorUnavailable` when the stream broke before the ack came.
    """

    # One per published message. The Event is made only when someone waits
    # before the ack came: with many publishes in flight most acks are in by
    # the time they are awaited, and an Event costs more than the rest of
    # this constructor.
    __slots__ = ("_ack", "_deadline", "_done", "_error", "_event", "_session", "correlation_id")

    def __init__(
        self, session: Optional[PublishSession], correlation_id: str, deadline: float
    ) -> None:
        self.correlation_id = correlation_id
        self._session = session
        self._deadline = deadline
        self._done = False
        self._event: Optional[anyio.Event] = None
        self._ack: Optional[wire.Ack] = None
        self._error: Optional[LiftbridgeError] = None

    def resolve(self, ack: Optional[wire.Ack], error: Optional[LiftbridgeError]) -> None:
        """Settle the outcome (called by the session that sent the message)."""
        self._ack, self._error = ack, error
        self._done = True
        event = self._event
        if event is not None:
            event.set()

    @property
    def done(self) -> bool:
        """Whether the ack (or an error) has arrived."""
        return self._done

    async def wait(self) -> Optional[wire.Ack]:
        """Wait for the ack; see the class docstring for the errors."""
        if not self._done:
            event = self._event
            if event is None:
                event = self._event = anyio.Event()
            with anyio.move_on_after(self._deadline - anyio.current_time()):
                await event.wait()
            if not self._done:
                if self._session is not None:
                    self._session.forget(self.correlation_id)
                raise ErrorAckTimeout(f"No ack for correlation id {self.correlation_id!r} in time")
        if self._error is not None:
            raise self._error
        return self._ack

    def __await__(self) -> Generator[Any, None, Optional[wire.Ack]]:
        return self.wait().__await__()


class PublishSession:
    """A PublishAsync stream and the acks awaited on it."""

    def __init__(self, channel: Channel, task_group: TaskGroup) -> None:
        self._channel = channel
        self._task_group = task_group
        self._pending: Dict[str, PendingAck] = {}
        self._call: Any = None
        self._scope: Optional[anyio.CancelScope] = None
        self._send_lock = anyio.Lock()
        self.closed = False

    async def start(self) -> None:
        """Open the stream; its reader runs in the client's task group."""
        await self._task_group.start(self._run)

    async def _run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        error: LiftbridgeError = ErrorUnavailable("PublishAsync stream closed")
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                async with self._channel.stream_stream(_PATH) as call:
                    self._call = call
                    task_status.started()
                    async for data in call:
                        self._dispatch(wire.PublishResponse.decode(data))
        except GRPCError as exc:
            error = from_grpc_error(exc)
            logger.debug("PublishAsync stream ended: %s", exc)
        finally:
            self.closed = True
            pending, self._pending = self._pending, {}
            for item in pending.values():
                item.resolve(None, error)

    def _dispatch(self, response: wire.PublishResponse) -> None:
        item = self._pending.pop(response.correlationId, None)
        if item is None:
            return  # its awaiter timed out and left
        err = response.asyncError
        if err is not None:
            item.resolve(
                None, publish_async_error(int(err.code), err.message, response.correlationId)
            )
        else:
            item.resolve(response.ack, None)

    def forget(self, correlation_id: str) -> None:
        """Stop waiting for an ack (its awaiter gave up)."""
        self._pending.pop(correlation_id, None)

    async def send(
        self, request: wire.PublishRequest, encoded: bytes, timeout: float
    ) -> PendingAck:
        """Send one request; returns at once with the awaitable for its ack."""
        if self.closed or self._call is None:
            raise ErrorUnavailable("PublishAsync stream is closed")
        correlation_id = request.correlationId
        if request.ackPolicy == wire.AckPolicy.NONE:
            item = PendingAck(None, correlation_id, 0.0)
            item.resolve(None, None)  # the server sends nothing back
        else:
            item = PendingAck(self, correlation_id, anyio.current_time() + timeout)
            self._pending[correlation_id] = item
        # Senders take turns: a message the stream's flow-control window cannot
        # take at once is sent in parts, across awaits, and no other message
        # may go out between them (StreamStreamCall.send_message does not
        # serialize its callers). Uncontended, the lock is taken without
        # `async with`, whose checkpoint in a shielded cancel scope costs a
        # scheduler pass per publish.
        lock = self._send_lock
        try:
            try:
                lock.acquire_nowait()
            except anyio.WouldBlock:
                await lock.acquire()
            try:
                await self._call.send_message(encoded)
            finally:
                lock.release()
        except BaseException as exc:
            self._pending.pop(correlation_id, None)
            if isinstance(exc, GRPCError):
                raise from_grpc_error(exc) from None
            raise
        return item

    async def aclose(self) -> None:
        """End the stream; acks still awaited fail with ErrorUnavailable."""
        self.closed = True
        if self._scope is not None:
            self._scope.cancel()
