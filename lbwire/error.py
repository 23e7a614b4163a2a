"""Exceptions raised by lbwire, and the one table that maps gRPC statuses to them.

The class names of gufo-liftbridge 0.2.0 (`LiftbridgeError`, `ErrorNotFound`,
`ErrorAlreadyExists`, `ErrorChannelClosed`, `ErrorUnavailable`,
`ErrorMessageSizeExceeded`, `ErrorNoMetadataLeader`) are kept, so code that
catches them keeps working.  lbwire adds finer classes below them where the
server says more, and mixes in the matching built-in exception
(`ValueError`, `TimeoutError`, `PermissionError`) where that is what a Python
programmer would catch.

Every decision from a gRPC status or the server's message text to an
exception is made here (`from_grpc_error`, `subscribe_error`); callers decide
by class, never by reading the text.

Transient and permanent errors: each class says, with its `transient`
attribute, whether trying the same call again (after fresh metadata) can
succeed: a broker that could not be reached, a leader that moved, an
election under way. The retry helpers retry exactly the transient ones.
Independently, `not_processed` says the transport knows the server never
began the call, so a publish may be sent again without being stored twice.
"""

from __future__ import annotations

import socket
from typing import ClassVar, Dict, Iterable, Optional, Tuple, Type, TypeVar, cast

from ._address import Address, format_address
from .grpc.status import GRPCError, Status

_R = TypeVar("_R")

__all__ = [
    "ErrorAckTimeout",
    "ErrorAlreadyExists",
    "ErrorAlreadyMember",
    "ErrorChannelClosed",
    "ErrorDeadlineExceeded",
    "ErrorEncryptionFailed",
    "ErrorEndOfPartition",
    "ErrorGroupExists",
    "ErrorGroupMembership",
    "ErrorHostNotFound",
    "ErrorIncorrectOffset",
    "ErrorInternal",
    "ErrorInvalidArgument",
    "ErrorInvalidPartition",
    "ErrorInvalidType",
    "ErrorLeaderMoved",
    "ErrorMalformedReply",
    "ErrorMessageSizeExceeded",
    "ErrorNoMetadataLeader",
    "ErrorNotAssigned",
    "ErrorNotCoordinator",
    "ErrorNotFound",
    "ErrorNotLeader",
    "ErrorNotMember",
    "ErrorPartitionPaused",
    "ErrorPermissionDenied",
    "ErrorReadonly",
    "ErrorSegmentClosed",
    "ErrorStaleEpoch",
    "ErrorUnavailable",
    "LiftbridgeError",
    "PublishAsyncError",
    "decode_reply",
    "from_grpc_error",
    "malformed_reply",
    "may_resend",
    "more_hopeful",
    "no_broker_reachable",
    "publish_async_error",
    "subscribe_error",
]


class LiftbridgeError(Exception):
    """Base class of every error lbwire raises about Liftbridge.

    Attributes:
        status: The gRPC status the server (or the transport) ended the call
            with, when the error came from a call; None otherwise.
        not_processed: True when the transport knows the server never began
            the call (so sending it again cannot duplicate its effect).
        transient: Class attribute: whether the same call may succeed when
            tried again (after fresh metadata); the retry helpers retry
            exactly these.
    """

    status: Optional[Status] = None
    not_processed: bool = False
    transient: ClassVar[bool] = False

    def __init__(
        self, message: str = "", *, status: Optional[Status] = None, not_processed: bool = False
    ) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        if not_processed:
            self.not_processed = True

    @property
    def message(self) -> str:
        """The human-readable text of the error."""
        return str(self.args[0]) if self.args else ""


class ErrorNotFound(LiftbridgeError):
    """The stream, partition or consumer group does not exist."""


class ErrorAlreadyExists(LiftbridgeError):
    """A stream with this name (or subject and name) already exists."""


class ErrorChannelClosed(LiftbridgeError):
    """The server ended a subscription for a reason lbwire cannot resume from."""


class ErrorUnavailable(LiftbridgeError):
    """No broker could be reached, or the connection broke mid-call."""

    transient = True


class ErrorMessageSizeExceeded(LiftbridgeError, ValueError):
    """A message is larger than the client or the server accepts."""


class ErrorNoMetadataLeader(LiftbridgeError):
    """The cluster has no metadata leader (an election is under way)."""

    transient = True


class ErrorInvalidArgument(LiftbridgeError, ValueError):
    """The server refused a request's arguments (bad name, subject, offset...)."""


class ErrorInvalidType(ErrorInvalidArgument, TypeError):
    """An argument has the wrong type (e.g. a `str` message value or header value).

    A `TypeError` as gufo-liftbridge raises there, and an `ErrorInvalidArgument`
    (`ValueError`) as earlier lbwire versions raised.
    """


class ErrorInvalidPartition(ErrorNotFound, ErrorInvalidArgument):
    """A negative partition number: no such partition can exist.

    An `ErrorNotFound` as gufo-liftbridge raises there (the server's answer),
    and an `ErrorInvalidArgument` (`ValueError`) as earlier lbwire versions
    raised; lbwire refuses it before sending anything.
    """


class ErrorHostNotFound(ErrorNotFound, ErrorUnavailable):
    """A broker's host name does not resolve (no address for it).

    An `ErrorNotFound` as gufo-liftbridge raises when no seed resolves, and
    an `ErrorUnavailable` (no broker reachable) as earlier lbwire versions
    raised. Not transient: the calls that meet it fail at once, unless
    another broker can serve them.
    """

    transient = False


class ErrorNotLeader(LiftbridgeError):
    """The broker asked is not the partition leader (metadata was stale)."""

    transient = True


class ErrorPartitionPaused(LiftbridgeError):
    """The partition was paused while a subscription was reading it."""


class ErrorReadonly(LiftbridgeError):
    """The partition is read-only: publishing to it is refused."""


class ErrorIncorrectOffset(LiftbridgeError):
    """Optimistic concurrency: the expected offset did not match the partition."""


class ErrorEncryptionFailed(LiftbridgeError):
    """The server cannot encrypt: its LIFTBRIDGE_ENCRYPTION_KEY is missing or invalid.

    Raised by `create_stream(encryption=True)` and by publishes to an
    encrypted stream the server fails to encrypt.
    """


class ErrorPermissionDenied(LiftbridgeError, PermissionError):
    """The client's identity is not authorized for this call on this resource."""


class ErrorDeadlineExceeded(LiftbridgeError, TimeoutError):
    """The call did not complete within its deadline."""


class ErrorAckTimeout(ErrorDeadlineExceeded):
    """A published message was not acknowledged within the ack timeout."""


class ErrorEndOfPartition(LiftbridgeError):
    """A subscription reached its stop position or the end of a read-only partition.

    `LiftbridgeClient.subscribe` ends its iterator instead of raising this; it
    is raised only by lower-level calls.
    """


class ErrorInternal(LiftbridgeError):
    """The server reported an internal error."""


class ErrorMalformedReply(ErrorInternal):
    """A broker's reply did not decode as the message the call expects.

    The peer is not a Liftbridge server of a compatible version, or the reply
    was corrupted; the same call would get the same answer, so it is not
    retried.
    """


class ErrorLeaderMoved(ErrorInternal):
    """A subscription's partition leadership moved: resume on the new leader.

    `LiftbridgeClient.subscribe` resumes instead of raising this.
    """

    transient = True


class ErrorSegmentClosed(ErrorInternal):
    """The log closed the segment a subscription was reading.

    The log cleaner replaced it (a new subscription gets past it), or the
    partition was paused. `LiftbridgeClient.subscribe` resumes, or raises
    `ErrorPartitionPaused`, instead of raising this.
    """

    transient = True


class ErrorGroupMembership(LiftbridgeError):
    """A consumer-group call was refused because of the member's standing.

    Its subclasses say why; a member mends each by joining again or by
    refreshing what it knows of the group.
    """


class ErrorAlreadyMember(ErrorGroupMembership):
    """The consumer is already a member of the group (an earlier join got through)."""


class ErrorGroupExists(ErrorGroupMembership, ErrorAlreadyExists):
    """A join that was to create the group found it created meanwhile.

    Liftbridge creates a group on its first join; when several members join
    a new group at once, every join but the first one that Raft applies is
    refused with this. The group exists then, so the same join, tried again,
    joins it: transient, and retried by the client.
    """

    transient = True


class ErrorNotMember(ErrorGroupMembership):
    """The consumer is not (or no longer) a member of the group."""


class ErrorStaleEpoch(ErrorGroupMembership):
    """The member's group epoch differs from the coordinator's."""


class ErrorNotCoordinator(ErrorGroupMembership):
    """The broker asked is not the group's coordinator (it moved)."""


class ErrorNotAssigned(ErrorGroupMembership):
    """The partition is assigned to a member of a newer group epoch."""


class PublishAsyncError(LiftbridgeError):
    """The server refused one message published on a PublishAsync stream.

    Attributes:
        code: The `PublishAsyncError.Code` value the server sent.
        correlation_id: The correlation id of the refused message.
    """

    def __init__(self, message: str, *, code: int, correlation_id: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.correlation_id = correlation_id

    def __reduce__(self) -> Tuple[object, ...]:
        # Keyword-only arguments: the default (cls, args) would lose them.
        return (_rebuild_refusal, (type(self), self.message, self.code, self.correlation_id))


def _rebuild_refusal(
    cls: Type[PublishAsyncError], message: str, code: int, correlation_id: str
) -> PublishAsyncError:
    return cls(message, code=code, correlation_id=correlation_id)


def _refusal_class(base: Type[LiftbridgeError]) -> Type[PublishAsyncError]:
    """A PublishAsyncError that is also `base`, so one `except` catches both paths."""
    name = "PublishAsync" + base.__name__[len("Error") :]
    cls = type(
        name,
        (PublishAsyncError, base),
        {
            "__doc__": f"A PublishAsync refusal that is also {base.__name__}.",
            "__module__": __name__,
        },
    )
    return cast(Type[PublishAsyncError], cls)


# PublishAsyncError.Code (liftbridge-api) to the class a unary Publish refused
# for the same reason raises: `except ErrorReadonly` works for both paths.
_ASYNC_REFUSALS: Dict[int, Type[PublishAsyncError]] = {
    1: _refusal_class(ErrorInvalidArgument),  # BAD_REQUEST
    2: _refusal_class(ErrorNotFound),  # NOT_FOUND
    3: _refusal_class(ErrorInternal),  # INTERNAL
    4: _refusal_class(ErrorReadonly),  # READONLY
    5: _refusal_class(ErrorIncorrectOffset),  # INCORRECT_OFFSET
    6: _refusal_class(ErrorEncryptionFailed),  # ENCRYPTION_FAILED
    7: _refusal_class(ErrorPermissionDenied),  # PERMISSION_DENIED
}
globals().update({cls.__name__: cls for cls in _ASYNC_REFUSALS.values()})  # for pickle


def publish_async_error(code: int, message: str, correlation_id: str = "") -> PublishAsyncError:
    """The exception for a message the server refused on a PublishAsync stream.

    It is a `PublishAsyncError` (with `code`) and also the class that names
    the cause, e.g. `ErrorPermissionDenied` for code PERMISSION_DENIED.
    """
    cls = _ASYNC_REFUSALS.get(code, PublishAsyncError)
    return cls(message or "publish refused", code=code, correlation_id=correlation_id)


# The single status-to-exception table.  Entries keyed by (status, text) are
# tried first: Liftbridge reuses generic codes for specific conditions and the
# text is the only thing that tells them apart (server/api.go, v1.9.0).
_BY_STATUS_AND_TEXT: Tuple[Tuple[Optional[Status], str, Type[LiftbridgeError]], ...] = (
    # Consumer groups (server/metadata.go, api.go, partition.go). None: any
    # status, as the join's refusal comes with whatever Raft apply returned.
    (None, "already a member", ErrorAlreadyMember),
    # JoinConsumerGroup of a group created by a concurrent join after this
    # one looked (server/metadata.go ErrConsumerGroupExists).
    (Status.FAILED_PRECONDITION, "consumer group already exists", ErrorGroupExists),
    (Status.FAILED_PRECONDITION, "not a member", ErrorNotMember),
    # "client-provided group epoch differs from broker group epoch", and Raft's
    # "proposed group epoch N is less than current epoch M".
    (None, "group epoch", ErrorStaleEpoch),
    (Status.FAILED_PRECONDITION, "not the consumer group coordinator", ErrorNotCoordinator),
    (Status.FAILED_PRECONDITION, "not currently assigned", ErrorNotAssigned),
    (Status.INTERNAL, "no known metadata leader", ErrorNoMetadataLeader),
    # Metadata changes are forwarded to the metadata leader over NATS; when it
    # just died and Raft has not noticed yet, NATS answers "no responders".
    (Status.INTERNAL, "no responders", ErrorNoMetadataLeader),
    (Status.INVALID_ARGUMENT, "exceeds max replication size", ErrorMessageSizeExceeded),
    # The server's NATS connection refuses payloads over NATS' max_payload
    # (1 MiB by default, the same as Liftbridge's replication limit) before
    # Liftbridge's own check: "failed to publish to NATS: nats: maximum
    # payload exceeded".
    (Status.UNKNOWN, "maximum payload exceeded", ErrorMessageSizeExceeded),
    (Status.UNKNOWN, "incorrect expected offset", ErrorIncorrectOffset),
    (Status.UNKNOWN, "is not authorized", ErrorPermissionDenied),
    # SetCursor stores the cursor by publishing to `__cursors` as the caller,
    # and reports that publish's refusal as Internal.
    (Status.INTERNAL, "is not authorized", ErrorPermissionDenied),
    (Status.FAILED_PRECONDITION, "not partition leader", ErrorNotLeader),
    # FetchPartitionMetadata's and the cursor RPCs' wording of the same refusal.
    (Status.FAILED_PRECONDITION, "should be sent to partition leader", ErrorNotLeader),
    (Status.FAILED_PRECONDITION, "not cursor partition leader", ErrorNotLeader),
    (Status.FAILED_PRECONDITION, "not leader for cursors partition", ErrorNotLeader),
    (Status.FAILED_PRECONDITION, "readonly", ErrorReadonly),
    (Status.FAILED_PRECONDITION, "paused", ErrorPartitionPaused),
    (Status.INTERNAL, "encryption", ErrorEncryptionFailed),
    # CreateStream(encryption=True) on a server without a valid
    # LIFTBRIDGE_ENCRYPTION_KEY: "Failed on preconditions for stream's
    # encryption handler: kwp: invalid AES key size ...".
    (Status.FAILED_PRECONDITION, "encryption", ErrorEncryptionFailed),
)

_BY_STATUS: Dict[Status, Type[LiftbridgeError]] = {
    Status.ALREADY_EXISTS: ErrorAlreadyExists,
    Status.NOT_FOUND: ErrorNotFound,
    Status.UNAVAILABLE: ErrorUnavailable,
    Status.INVALID_ARGUMENT: ErrorInvalidArgument,
    Status.OUT_OF_RANGE: ErrorInvalidArgument,
    Status.PERMISSION_DENIED: ErrorPermissionDenied,
    Status.UNAUTHENTICATED: ErrorPermissionDenied,
    Status.DEADLINE_EXCEEDED: ErrorDeadlineExceeded,
    Status.RESOURCE_EXHAUSTED: ErrorMessageSizeExceeded,
    Status.INTERNAL: ErrorInternal,
}


def _unresolvable(exc: BaseException) -> bool:
    """Whether a failure was caused by a host name that does not resolve."""
    seen = 0
    cause: Optional[BaseException] = exc
    while cause is not None and seen < 8:  # a cause chain is short; never loop
        if isinstance(cause, socket.gaierror):
            return True
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return False


def from_grpc_error(
    exc: GRPCError,
    *,
    default: Type[LiftbridgeError] = LiftbridgeError,
    message: Optional[str] = None,
) -> LiftbridgeError:
    """Turn a gRPC-level error into the lbwire exception that names its cause.

    Args:
        exc: The error the gRPC layer raised.
        default: The class for statuses the table does not know.
        message: Text to use instead of the server's (e.g. one that names
            the call and the broker).

    Returns:
        An exception instance (not raised) carrying the status, the message
        and the transport's `not_processed` flag.
    """
    if exc.status == Status.UNAVAILABLE and _unresolvable(exc):
        return ErrorHostNotFound(
            message or exc.message, status=exc.status, not_processed=exc.not_processed
        )
    text = exc.message.lower()
    cls = next(
        (
            c
            for status, needle, c in _BY_STATUS_AND_TEXT
            if (status is None or exc.status == status) and needle in text
        ),
        None,
    ) or _BY_STATUS.get(exc.status, default)
    if message is None:
        message = exc.message or exc.status.name
    return cls(message, status=exc.status, not_processed=exc.not_processed)


def decode_reply(response_type: Type[_R], data: bytes, *, method: str, broker: Address) -> _R:
    """Decode a unary call's reply; one that does not decode raises `ErrorMalformedReply`.

    Args:
        response_type: The wire message class the call answers with.
        data: The reply's bytes.
        method: The RPC's name, for the message.
        broker: The broker that sent it, for the message.
    """
    try:
        return response_type.decode(data)  # type: ignore[attr-defined, no-any-return]
    except ValueError as exc:
        # wire.DecodeError, a ValueError, caught as such: this module does
        # not import the wire package.
        raise malformed_reply(exc, method=method, broker=broker) from exc


def malformed_reply(exc: ValueError, *, method: str, broker: Address) -> ErrorMalformedReply:
    """The `ErrorMalformedReply` for `exc`, a `wire.DecodeError` of `method`'s reply."""
    return ErrorMalformedReply(
        f"{method} reply from {format_address(broker)} does not decode: {exc}"
    )


def more_hopeful(earlier: Optional[LiftbridgeError], later: LiftbridgeError) -> LiftbridgeError:
    """Of two failures of one call at different brokers, the one to report.

    A transient one wins (trying again may succeed there), so one broker whose
    name does not resolve does not stop the retries while another is only
    down; otherwise the later one.
    """
    if earlier is not None and earlier.transient and not later.transient:
        return earlier
    return later


def may_resend(error: LiftbridgeError) -> bool:
    """Whether a failed publish may be sent again.

    The server never began it, and trying again can help (a host name that
    does not resolve will not).
    """
    return error.not_processed and not isinstance(error, ErrorHostNotFound)


def no_broker_reachable(exc: ErrorUnavailable, seeds: Iterable[Address]) -> ErrorUnavailable:
    """The error a call any broker can serve ends with when none answered.

    An `ErrorHostNotFound` when that was the last broker's failure (so every
    broker's, see `more_hopeful`), else an `ErrorUnavailable`.
    """
    names = ", ".join(format_address(a) for a in seeds)
    cls = ErrorHostNotFound if isinstance(exc, ErrorHostNotFound) else ErrorUnavailable
    return cls(f"No broker reachable (seeds: {names}): {exc}", status=exc.status)


def subscribe_error(
    exc: GRPCError, *, where: str, handshake_done: bool, explicit_stop_offset: bool
) -> Optional[LiftbridgeError]:
    """The exception for a Subscribe call that ended with `exc`, or None.

    None means the subscription simply ended: its stop position was reached,
    a read-only partition's end, or an implied stop before the start.

    Args:
        exc: The error the gRPC layer raised.
        where: `stream/partition`, for the messages.
        handshake_done: Whether the server had confirmed the subscription
            (its first, empty message) before the error.
        explicit_stop_offset: Whether the request asked for STOP_OFFSET.
    """
    status, text = exc.status, exc.message
    lowered = text.lower()
    if status == Status.RESOURCE_EXHAUSTED:
        if "larger than max" in text:
            # Our own receive limit, not the server's end of stream.
            return ErrorMessageSizeExceeded(
                f"A message of {where} exceeds max_message_size: {text}", status=status
            )
        return None  # stop position reached, end of read-only partition, or empty
    if status == Status.UNAVAILABLE:
        return ErrorUnavailable(text, status=status, not_processed=exc.not_processed)
    if "segment has been closed" in text:
        # v1.9.0: Internal before the handshake, Unknown after it.
        return ErrorSegmentClosed(text, status=status)
    if not handshake_done:
        if status == Status.FAILED_PRECONDITION and "leader" in lowered:
            return ErrorLeaderMoved(text, status=status)
        if (
            status == Status.INVALID_ARGUMENT
            and not explicit_stop_offset
            and "stop offset is before start offset" in lowered
        ):
            # The implied stop (newest message, end of a read-only partition,
            # stop time) lies before the start, e.g. NEW_ONLY on a read-only
            # partition: nothing to read.
            return None
        return from_grpc_error(exc)
    if status == Status.INTERNAL:
        return ErrorLeaderMoved(text, status=status)  # log closed: leadership moved
    if status == Status.FAILED_PRECONDITION:
        return ErrorPartitionPaused(f"Partition {where} was paused: {text}", status=status)
    return from_grpc_error(exc, default=ErrorChannelClosed)


# -- subscription-side errors (issue 10 items 9 and 6, issue 11 item 3) --------

__all__ += ["ErrorCursorNotFound", "ErrorReverseUnsupported", "ErrorUndecodableMessage"]


class ErrorReverseUnsupported(ErrorInvalidArgument):
    """The server does not support reverse subscriptions (it ignores `reverse`).

    Liftbridge v1.9.0 reads forwards whatever the request says; lbwire
    detects that from what the server does and raises this before
    delivering a message in the wrong order.
    """


class ErrorCursorNotFound(ErrorNotFound):
    """StartPosition.RESUME found no stored cursor, and the caller asked to be told.

    Raised by `subscribe(..., missing_cursor=None)`.
    """


class ErrorUndecodableMessage(LiftbridgeError, ValueError):
    """A received message cannot be decoded.

    Its encoding header lies or names an unknown method, or its value expands
    beyond the client's `max_message_size`.

    The subscription that raised it has ended; subscribing again from
    `offset + 1` skips the message and loses or repeats no other.

    Attributes:
        stream: The message's stream.
        partition: Its partition.
        offset: Its offset.
        raw: The message as received (`lbwire.types.Message`, value not
            decompressed, the encoding header kept).
    """

    def __init__(
        self, message: str, *, stream: str, partition: int, offset: int, raw: object
    ) -> None:
        super().__init__(message)
        self.stream = stream
        self.partition = partition
        self.offset = offset
        self.raw = raw

    def __reduce__(self) -> Tuple[object, ...]:
        return (
            _rebuild_undecodable,
            (self.message, self.stream, self.partition, self.offset, self.raw),
        )


def _rebuild_undecodable(
    message: str, stream: str, partition: int, offset: int, raw: object
) -> ErrorUndecodableMessage:
    return ErrorUndecodableMessage(
        message, stream=stream, partition=partition, offset=offset, raw=raw
    )


# -- what a reverse subscription's ending means (lbwire._reverse) ----------------------


def is_reverse_end(exc: GRPCError) -> bool:
    """Whether a reverse Subscribe call ended normally: past the oldest message.

    The server sends the reverse reader's io.EOF as the call's status,
    UNKNOWN with the message "EOF".
    """
    return exc.status == Status.UNKNOWN and exc.message == "EOF"


def is_empty_partition_refusal(exc: GRPCError) -> bool:
    """Whether the server refused a reverse subscription because the partition is empty."""
    return exc.status == Status.INTERNAL and "Failed to create stream reader" in exc.message


def is_stop_reached(exc: GRPCError) -> bool:
    """Whether a Subscribe call ended at its stop position (RESOURCE_EXHAUSTED)."""
    return exc.status == Status.RESOURCE_EXHAUSTED
