"""ClientOptions: every option of a `LiftbridgeClient`, in one frozen object.

The client builds its `ClientOptions` once, in its constructor, from the
keyword arguments gufo-liftbridge programs pass (or takes one given as
`options=`), and hands that one object to its parts: the publisher, the
subscriptions, the router and the connections' `ChannelConfig` all read the
same values, which nothing can change afterwards. The client's option
attributes (`client.max_publish_size`...) read it, and assigning one raises
`ErrorReadOnlyOption`; a client with other options is a new client::

    import dataclasses

    options = dataclasses.replace(client.options, max_publish_size=4 << 20)
    bigger = LiftbridgeClient(client.broker_seeds, options=options)

`dataclasses.replace` checks the new values as the constructor does.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Generic,
    NoReturn,
    Optional,
    Protocol,
    Tuple,
    TypeVar,
    Union,
    cast,
    overload,
)

from .compression import compress
from .error import ErrorInvalidArgument, ErrorInvalidType, ErrorReadOnlyOption, PublishAsyncError
from .grpc.config import ChannelConfig
from .grpc.keepalive import SAFE_KEEPALIVE_TIME
from .grpc.proxy import HttpProxy, select_proxy
from .retry import RetryPolicy
from .serde import Deserializer, Serializer, check_callable
from .types import CursorConvention, Partitioner

if TYPE_CHECKING:
    # Annotations only: ssl is loaded only with TLS.
    import ssl

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_PENDING",
    "DEFAULT_MAX_PENDING_BYTES",
    "DEFAULT_MAX_PUBLISH_SIZE",
    "ClientOptions",
]

_T = TypeVar("_T")

#: gufo-liftbridge's default for `max_message_size` (the gRPC receive limit).
DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024
#: The server's default `clustering.replication.max.bytes`: larger messages are
#: refused by the server, and silently lost when published without an ack.
DEFAULT_MAX_PUBLISH_SIZE = 1024 * 1024
#: Default bound on a client's publishes in flight (awaiting their acks).
DEFAULT_MAX_PENDING = 4096
#: Default bound on the bytes of a client's publishes in flight.
DEFAULT_MAX_PENDING_BYTES = 32 * 1024 * 1024
#: The gRPC receive limit is never below grpc's default, whatever
#: `max_message_size` says: replies such as metadata are not messages.
_MIN_RECEIVE_LIMIT = 4 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ClientOptions:
    """The options of a `LiftbridgeClient`; frozen, and checked on creation.

    Each attribute is the client's keyword argument of the same name, with
    the same default; the client reads it as `client.<name>` too. Derive
    changed options with `dataclasses.replace(client.options, name=value)`
    and give them to a new client: `LiftbridgeClient(brokers, options=...)`.

    Attributes:
        max_message_size: Largest message received, in bytes (gRPC limit,
            at least 4 MiB in effect); it bounds decompressed values too.
        enable_http_proxy: Connect through the HTTP proxy the environment
            names, as gufo-liftbridge (grpcio) does: the first of `grpc_proxy`,
            `https_proxy`, `http_proxy` that is set, except to the hosts the
            first of `no_grpc_proxy`, `no_proxy` lists (names, their
            subdomains, addresses, CIDR blocks, `*`). Read once, when the
            client is made.
        compression_method: `zlib` or `lzma`: compress published values when
            `auto_compress=True` is passed to `publish`.
        compression_threshold: Compress only values at least this long.
        encoding_header: Header that names the compression method, written
            by publishes and read by subscriptions.
        publish_async_ack_timeout: Seconds to wait for the acks of
            `publish_bulk` and `publish_async`.
        metadata_leader_timeout: Mean pause (s) after "no metadata leader".
        metadata_leader_dev: Deviation of that pause (s).
        connect_timeout: Seconds a connection attempt may take.
        rpc_timeout: Deadline (s) sent with every unary call but publishes.
        ack_timeout: Default seconds a `publish` waits for its ack.
        max_publish_size: Largest publish request sent, in bytes; larger ones
            raise `ErrorMessageSizeExceeded` before anything is sent. The
            connections' send limit follows it, so what passes this check
            reaches the server.
        publish_async_max_pending: Most acked publishes in flight at once
            (sent, or about to be, and not yet acknowledged, refused or timed
            out), whichever method sent them. A publish beyond it waits for
            room (see `publish_async`).
        publish_async_max_pending_bytes: Most bytes of encoded publishes in
            flight at once. A single message larger than this is sent alone,
            once nothing else is in flight.
        on_publish_error: Called with each `PublishAsyncError` no awaiter
            receives: refusals of fire-and-forget publishes (AckPolicy.NONE
            on `publish_async` or `publish_batch`) and late ones of publishes
            whose awaiter gave up. Called in the client's receiving task: it
            must return quickly; what it raises is logged, never raised.
            None logs them instead (the 1st, 10th, 100th...); either way
            `publish_errors` counts them.
        ssl_context: TLS context (client certificate included for mTLS);
            None for plaintext. lbwire sets its ALPN protocols to `h2` (gRPC
            needs it, and Python offers no per-connection ALPN nor a way to
            copy a context): give lbwire a context of its own if another
            client uses it for another protocol.
        tls_server_hostname: Host name to verify instead of the broker's host.
        retry_policy: Bounds of the retries of failed calls (the client's
            `retry_policy=None` means `RetryPolicy()`).
        resubscribe_wait_time: How long (s) a subscription tries to resume
            after its broker failed before it raises.
        cursor_convention: What stored cursors hold (gufo's NEXT by default).
        partitioner: Default partitioner for `publish` without a partition.
        keepalive_time: Seconds without anything received, while calls are
            in progress (a quiet subscription), before a keepalive PING; no
            answer within 20 s fails the connection and its calls, so a dead
            broker is noticed. None: no PINGs. The default, 310 s, is what
            Liftbridge (grpc-go) accepts: it closes connections that ping
            more often than every 5 minutes (see `lbwire.grpc.keepalive`).
        idle_timeout: Close a broker connection no call has used for this
            many seconds (it reopens on the next call); None keeps them.
        max_conns_per_broker: Most connections to one broker for Subscribe
            calls (Liftbridge's client guide: a pool of 2 by default). A
            subscription takes an idle pooled connection, else a new one while
            the pool is below this limit, else shares the least busy one.
            Every other call goes over one more connection of its own per
            broker. Each is an HTTP/2 connection that multiplexes its calls.
        proxy: `http://[user:password@]host:port`: connect to every broker
            through this HTTP proxy, whatever `enable_http_proxy` and the
            environment say. Connections go through a CONNECT tunnel, TLS end
            to end; `connect_timeout` covers the proxy. The credentials are
            sent as `Proxy-Authorization: Basic` and never shown (not in the
            options' repr either). A proxy that refuses the credentials (407)
            or the broker (403) raises `ErrorPermissionDenied` without
            retries; one that cannot be reached or cannot reach the broker
            raises `ErrorUnavailable`.
        key_serializer: Turns the keys given to the publishing methods into
            bytes (see `lbwire.serde`); None sends bytes as they are.
        value_serializer: Turns the values given to the publishing methods
            into bytes; None sends bytes as they are.
        key_deserializer: Turns received keys into values (subscriptions,
            readers, consumers); None keeps bytes.
        value_deserializer: Turns received values into values; None keeps
            bytes. One that raises for a value makes the subscription raise
            `ErrorUndecodableMessage` (or deliver it raw, with
            `on_undecodable="raw"`).

    Raises:
        TypeError: An option of the wrong type, e.g. `max_message_size="x"`
            (`ErrorInvalidType`, also a `ValueError`).
        ValueError: An option out of its range, or an unknown compression
            method (`ErrorInvalidArgument`).
    """

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    enable_http_proxy: bool = False
    compression_method: Optional[str] = None
    compression_threshold: int = 0
    encoding_header: str = "X-Msg-Encoding"
    publish_async_ack_timeout: float = 10.0
    metadata_leader_timeout: float = 3.0
    metadata_leader_dev: float = 1.0
    connect_timeout: float = 5.0
    rpc_timeout: float = 10.0
    ack_timeout: float = 5.0
    max_publish_size: int = DEFAULT_MAX_PUBLISH_SIZE
    publish_async_max_pending: int = DEFAULT_MAX_PENDING
    publish_async_max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES
    on_publish_error: Optional[Callable[[PublishAsyncError], None]] = None
    ssl_context: Optional[ssl.SSLContext] = None
    tls_server_hostname: Optional[str] = None
    retry_policy: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    resubscribe_wait_time: float = 30.0
    cursor_convention: CursorConvention = CursorConvention.NEXT
    partitioner: Optional[Partitioner] = None
    keepalive_time: Optional[float] = SAFE_KEEPALIVE_TIME
    idle_timeout: Optional[float] = 300.0
    max_conns_per_broker: int = 2
    # Not in the repr: the URL may hold credentials.
    proxy: Optional[str] = dataclasses.field(default=None, repr=False)
    key_serializer: Optional[Serializer[Any]] = None
    value_serializer: Optional[Serializer[Any]] = None
    key_deserializer: Optional[Deserializer[Any]] = None
    value_deserializer: Optional[Deserializer[Any]] = None

    def __post_init__(self) -> None:
        self._check_types()
        if self.compression_method is not None:
            compress(b"", self.compression_method)  # validates the method name
        for name in (
            "max_message_size",
            "max_publish_size",
            "publish_async_max_pending",
            "publish_async_max_pending_bytes",
            "connect_timeout",
            "rpc_timeout",
            "ack_timeout",
            "publish_async_ack_timeout",
        ):
            value = getattr(self, name)
            if value <= 0:
                raise ErrorInvalidArgument(f"{name} must be positive, not {value}")
        if self.max_conns_per_broker < 1:
            raise ErrorInvalidArgument(
                f"max_conns_per_broker must be at least 1, not {self.max_conns_per_broker}"
            )
        if self.idle_timeout is not None and self.idle_timeout <= 0:
            raise ErrorInvalidArgument(f"idle_timeout must be positive, not {self.idle_timeout}")
        if not isinstance(self.retry_policy, RetryPolicy):
            raise ErrorInvalidArgument(
                f"retry_policy must be a RetryPolicy, not {type(self.retry_policy).__name__}"
            )
        check_callable("on_publish_error", self.on_publish_error)
        for name in SERDE_OPTIONS:
            check_callable(name, getattr(self, name))
        if self.proxy is not None:
            _checked_proxy(self.proxy, False)
        # An int (as gufo-era code may pass) becomes the enum; a bad one raises.
        object.__setattr__(self, "cursor_convention", CursorConvention(self.cursor_convention))

    def _check_types(self) -> None:
        """Raise `ErrorInvalidType` for an option of the wrong type (before any range check)."""
        for name, (kinds, expected) in _TYPES.items():
            value = getattr(self, name)
            if value is None and "None" in expected:
                continue
            if isinstance(value, bool) or not isinstance(value, kinds):
                # (Not the value: a proxy URL may hold credentials.)
                raise ErrorInvalidType(f"{name} must be {expected}, not {type(value).__name__}")

    def channel_config(self) -> ChannelConfig:
        """The settings of every connection a client with these options opens.

        With `enable_http_proxy`, this reads the proxy variables of the
        environment (the client calls it once, when it is made).

        Raises:
            ValueError: A proxy variable names a proxy lbwire cannot use
                (`ErrorInvalidArgument`).
        """
        return ChannelConfig(
            connect_timeout=self.connect_timeout,
            max_receive_message_length=max(self.max_message_size, _MIN_RECEIVE_LIMIT),
            # Whatever passes the max_publish_size check must pass the
            # transport's send limit too.
            max_send_message_length=max(self.max_message_size, self.max_publish_size),
            ssl_context=self.ssl_context,
            server_hostname=self.tls_server_hostname,
            keepalive_time=self.keepalive_time,
            proxy=_checked_proxy(self.proxy, self.enable_http_proxy),
        )


#: The options whose type is checked: the types accepted, and how the error names them.
_TYPES: Dict[str, Tuple[Tuple[type, ...], str]] = {
    **{
        name: ((numbers.Integral,), "an int")
        for name in (
            "max_message_size",
            "max_publish_size",
            "compression_threshold",
            "max_conns_per_broker",
        )
    },
    **{
        name: ((numbers.Real,), "a number of seconds")
        for name in (
            "publish_async_ack_timeout",
            "metadata_leader_timeout",
            "metadata_leader_dev",
            "connect_timeout",
            "rpc_timeout",
            "ack_timeout",
            "resubscribe_wait_time",
        )
    },
    **{
        name: ((numbers.Real,), "a number of seconds or None")
        for name in ("keepalive_time", "idle_timeout")
    },
    "encoding_header": ((str,), "a str"),
    **{
        name: ((str,), "a str or None")
        for name in ("compression_method", "tls_server_hostname", "proxy")
    },
}


def _checked_proxy(proxy: Optional[str], enable_http_proxy: bool) -> Optional[HttpProxy]:
    """The connections' proxy (see `select_proxy`), or `ErrorInvalidArgument`."""
    try:
        return select_proxy(proxy, enable_http_proxy)
    except ValueError as exc:  # (the message never shows credentials)
        raise ErrorInvalidArgument(str(exc)) from None


#: The serializer and deserializer options.
SERDE_OPTIONS = ("key_serializer", "value_serializer", "key_deserializer", "value_deserializer")


#: The option names, in the constructor's order.
OPTION_NAMES = tuple(field.name for field in dataclasses.fields(ClientOptions))


class HasOptions(Protocol):
    """What owns a `ClientOptions`: the client."""

    @property
    def options(self) -> ClientOptions: ...


def read_only_option(name: str) -> ErrorReadOnlyOption:
    """The error raised when a program assigns the client's option `name`."""
    if name == "broker_seeds":
        how = "LiftbridgeClient(brokers, options=client.options)"
    elif name == "options":
        how = "LiftbridgeClient(client.broker_seeds, options=new_options)"
    else:
        how = (
            f"LiftbridgeClient(client.broker_seeds, "
            f"options=dataclasses.replace(client.options, {name}=...))"
        )
    return ErrorReadOnlyOption(
        f"LiftbridgeClient.{name} is read-only: a client's options are fixed when "
        f"it is made. Make a client with the changed option instead: {how}"
    )


class Option(Generic[_T]):
    """A client attribute that reads the client's `ClientOptions` and refuses assignment."""

    __slots__ = ("name",)

    def __init__(self) -> None:
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: Optional[type] = None) -> Option[_T]: ...

    @overload
    def __get__(self, instance: HasOptions, owner: Optional[type] = None) -> _T: ...

    def __get__(
        self, instance: Optional[HasOptions], owner: Optional[type] = None
    ) -> Union[_T, Option[_T]]:
        if instance is None:
            return self
        return cast(_T, getattr(instance.options, self.name))

    def __set__(self, instance: HasOptions, value: object) -> NoReturn:
        raise read_only_option(self.name)

    def __delete__(self, instance: HasOptions) -> NoReturn:
        raise read_only_option(self.name)
