"""Settings of a gRPC channel."""

from __future__ import annotations

import dataclasses
import math
import ssl
from typing import Optional

__all__ = ["ChannelConfig"]

_MiB = 1024 * 1024
_MAX_WINDOW = 2**31 - 1
# grpc-go servers answer pings more frequent than this, without calls in
# progress, with GOAWAY "too_many_pings" (their default enforcement policy).
IDLE_PING_INTERVAL = 300.0
# grpc clients refuse keepalive times below 10 s; so do we.
MIN_KEEPALIVE_TIME = 10.0


@dataclasses.dataclass(frozen=True)
class ChannelConfig:
    """Settings of a :class:`~lbwire.grpc.Channel`; validated on creation.

    Attributes:
        connect_timeout: seconds to open the TCP (and TLS) connection before the
            call fails with UNAVAILABLE.
        max_receive_message_length: larger inbound messages fail their call
            with RESOURCE_EXHAUSTED.
        max_send_message_length: larger outbound messages fail with
            RESOURCE_EXHAUSTED before anything is sent.
        ssl_context: ``None`` for plaintext (h2c with prior knowledge);
            otherwise TLS with this context (ALPN ``h2`` is set on it).
        server_hostname: the TLS server name (SNI and certificate check),
            when it differs from the host the channel connects to.
        keepalive_time: send a PING after this many seconds without inbound
            traffic, and close the connection if no answer comes within
            ``keepalive_timeout``. ``None`` (the default) sends no pings. At
            least 10 s. Without calls in progress pings are only sent if
            ``keepalive_without_calls`` is set, and then at most every
            5 minutes (grpc-go servers send GOAWAY "too_many_pings" otherwise).
            grpc-go's default enforcement also strikes pings less than 5 min
            apart while the server sends nothing, so against Liftbridge use
            300 s or more unless its policy was relaxed; after a
            "too_many_pings" GOAWAY the channel doubles its interval.
        keepalive_timeout: seconds to wait for a PING's answer.
        keepalive_without_calls: also ping an idle connection (every 5 min at most).
        stream_window_size: inbound flow-control window of each call. Large
            enough that a fast server streams without waiting for our
            WINDOW_UPDATEs (which are batched per quarter window).
        connection_window_size: inbound flow-control window of the connection,
            shared by all calls.
        user_agent: the ``user-agent`` request header.

    """

    connect_timeout: float = 5.0
    max_receive_message_length: int = 4 * _MiB
    max_send_message_length: int = 4 * _MiB
    ssl_context: Optional[ssl.SSLContext] = None
    server_hostname: Optional[str] = None
    keepalive_time: Optional[float] = None
    keepalive_timeout: float = 20.0
    keepalive_without_calls: bool = False
    stream_window_size: int = 4 * _MiB
    connection_window_size: int = 16 * _MiB
    user_agent: str = "lbwire-grpc/0.1"

    def __post_init__(self) -> None:
        _positive("connect_timeout", self.connect_timeout)
        _positive("keepalive_timeout", self.keepalive_timeout)
        if self.keepalive_time is not None:
            _positive("keepalive_time", self.keepalive_time)
            if self.keepalive_time < MIN_KEEPALIVE_TIME:
                raise ValueError(f"keepalive_time must be at least {MIN_KEEPALIVE_TIME} s")
        for name in ("max_receive_message_length", "max_send_message_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= 2**32 - 1:
                raise ValueError(f"{name} must be an int in [0, 2**32-1]")
        for name in ("stream_window_size", "connection_window_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 65_535 <= value <= _MAX_WINDOW:
                raise ValueError(f"{name} must be an int in [65535, 2**31-1]")
        if self.ssl_context is not None and not isinstance(self.ssl_context, ssl.SSLContext):
            raise TypeError("ssl_context must be an ssl.SSLContext or None")
        if self.server_hostname is not None and self.ssl_context is None:
            raise ValueError("server_hostname needs an ssl_context")
        if not self.user_agent.isascii() or not self.user_agent.isprintable():
            raise ValueError("user_agent must be printable ASCII")


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be positive and finite")
