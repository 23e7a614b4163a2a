"""The exception hierarchy (see `lbwire.error`): classes only, no decisions."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Optional, Tuple, Type

from ..grpc.status import Status

if TYPE_CHECKING:
    from ..types import Message


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


class ErrorReadOnlyOption(LiftbridgeError, AttributeError):
    """A program assigned one of the client's options, which are fixed.

    An `AttributeError`, as Python raises for any read-only attribute. The
    message says how to make a client with the changed option (see
    `lbwire.options.ClientOptions`).
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


class _SettleOutcome(LiftbridgeError):
    """A settled publish's error: where it was fenced, and its correlation id."""

    def __init__(
        self,
        message: str = "",
        *,
        offset: Optional[int] = None,
        correlation_id: str = "",
        status: Optional[Status] = None,
    ) -> None:
        super().__init__(message, status=status)
        self.offset = offset
        self.correlation_id = correlation_id


class ErrorNotStored(_SettleOutcome, ErrorIncorrectOffset):
    """A settled publish (`publish(settle=True)`) ended, and the message is not stored.

    Another message holds the offset it was fenced at, so none of its copies
    can ever be stored: publishing it again stores no duplicate
    (`not_processed` is True).

    Attributes:
        offset: The offset the message was fenced at (its expected offset).
        correlation_id: The message's correlation id.
    """

    not_processed = True


class ErrorUnsettled(_SettleOutcome, ErrorAckTimeout):
    """A settled publish could not be settled in time: the message may be stored, at most once.

    The fence still holds: every copy carried the same expected offset, so
    the message is stored at `offset` or nowhere, never twice. Reading that
    offset later (its `lbwire-settle-id` header) tells which.

    Attributes:
        offset: Where the message may be stored (None: nowhere, as no copy
            could be stored; the partition's fence was not confirmed yet).
        correlation_id: The message's correlation id.
    """


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
    """The log closed (or lost) the segment a subscription was reading.

    The log cleaner replaced it or the log was cut under the reader (a new
    subscription gets past it), or the partition was paused.
    `LiftbridgeClient.subscribe` resumes, or raises `ErrorPartitionPaused`,
    instead of raising this.
    """

    transient = True


class ErrorTaskFailed(LiftbridgeError):
    """A background task of a consumer-group member or a reader failed.

    Raised when the object's block is left, for a failure of lbwire's own
    that is not a `LiftbridgeError` (a bug); the message names the object
    and the task, and `__cause__` is the original exception.
    """


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


class ErrorMemberInactive(ErrorNotMember):
    """The coordinator lists the member but does not count it as active.

    Liftbridge's coordinator answers "consumer not active for server (no
    timer)" when it holds no liveness timer for a member it lists
    (`server/groups.go`), as it can after node restarts. Waiting does not mend
    it: a `Consumer` leaves the group and joins again with the same id.
    """


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

    Its encoding header lies or names an unknown method, its value expands
    beyond the client's `max_message_size`, or its value or key deserializer
    (`lbwire.serde`) raised (that exception is its `__cause__`).

    The subscription that raised it has ended; subscribing again from
    `offset + 1` skips the message and loses or repeats no other.

    Attributes:
        stream: The message's stream.
        partition: Its partition.
        offset: Its offset.
        raw: The message as received (`lbwire.types.Message`: value not
            decompressed, the encoding header kept, nothing deserialized).
    """

    def __init__(
        self, message: str, *, stream: str, partition: int, offset: int, raw: Message
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
    message: str, stream: str, partition: int, offset: int, raw: Message
) -> ErrorUndecodableMessage:
    return ErrorUndecodableMessage(
        message, stream=stream, partition=partition, offset=offset, raw=raw
    )


class ErrorRevisionMismatch(LiftbridgeError):
    """A table's compare-and-set (`put(..., expected=)`) found the key at another revision.

    Nothing was stored: read the key again (`Table.get`) and retry with its
    current revision.

    Attributes:
        key: The key, as given.
        expected: The revision the write expected (`ABSENT`: no value).
        revision: The key's revision the table found (-1: no value).
    """

    def __init__(self, message: str, *, key: object, expected: int, revision: int) -> None:
        super().__init__(message, not_processed=True)
        self.key = key
        self.expected = expected
        self.revision = revision

    def __reduce__(self) -> Tuple[object, ...]:
        return (_rebuild_mismatch, (self.message, self.key, self.expected, self.revision))


def _rebuild_mismatch(
    message: str, key: object, expected: int, revision: int
) -> ErrorRevisionMismatch:
    return ErrorRevisionMismatch(message, key=key, expected=expected, revision=revision)


class ErrorNotATable(ErrorInvalidArgument):
    """A compare-and-set on a stream that does not carry the table's marker.

    The server ignores expected offsets on a stream without optimistic
    concurrency control, and its metadata does not say which kind a stream
    is; a stream `client.table()` created carries a marker record that
    proves it.
    """
