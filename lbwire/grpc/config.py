"""Settings of a gRPC channel."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Optional

from .. import __version__
from .proxy import HttpProxy

if TYPE_CHECKING:
    import ssl

__all__ = ["ChannelConfig"]

_MiB = 1024 * 1024
_MAX_WINDOW = 2**31 - 1
#: The shortest ``keepalive_time`` accepted, as grpc clients do: a PING every
#: few seconds is abuse of a server on the internet, and grpc-go servers
#: close connections that ping more often than every 5 minutes anyway (see
#: :mod:`lbwire.grpc.keepalive`). Tests lower it (``monkeypatch.setattr``) to
#: see keepalive at work in a fraction of a second; nothing else should.
MIN_KEEPALIVE_TIME = 10.0


@dataclasses.dataclass(frozen=True)
class ChannelConfig:
    """Settings of a :class:`~lbwire.grpc.Channel`; validated on creation.

    Attributes:
        connect_timeout: seconds to open the connection (TCP, TLS, and the
            HTTP/2 preface up to the server's first SETTINGS) before the call
            fails with UNAVAILABLE.
        max_receive_message_length: larger inbound messages fail their call
            with RESOURCE_EXHAUSTED.
        max_send_message_length: larger outbound messages fail with
            RESOURCE_EXHAUSTED before anything is sent.
        ssl_context: ``None`` for plaintext (h2c with prior knowledge);
            otherwise TLS with this context (ALPN ``h2`` is set on it).
        server_hostname: the TLS server name (SNI and certificate check),
            when it differs from the host the channel connects to.
        keepalive_time: while calls are in progress, send a PING after this
            many seconds in which nothing was received, and fail the
            connection (its calls with UNAVAILABLE) if no answer comes within
            ``keepalive_timeout``: a dead peer is noticed within
            ``keepalive_time + keepalive_timeout``. ``None`` (the default)
            sends no PINGs. At least 10 s. Safe values depend on the server:
            grpc-go servers with their default policy (Liftbridge's) close
            connections that ping less than 5 minutes apart while the server
            sends nothing (GOAWAY "too_many_pings" at the third PING), so use
            :data:`~lbwire.grpc.keepalive.SAFE_KEEPALIVE_TIME` (310 s) or
            more against them unless their ``EnforcementPolicy.MinTime`` was
            lowered. After a "too_many_pings" GOAWAY the channel doubles its
            interval, as grpc clients do.
        keepalive_timeout: seconds to wait for a PING's answer.
        keepalive_without_calls: also ping connections without calls in
            progress, at most every 2 hours and a minute (more often, grpc-go
            servers with their default ``PermitWithoutStream`` close the
            connection).
        stream_window_size: inbound flow-control window of each call. Large
            enough that a fast server streams without waiting for our
            WINDOW_UPDATEs (which are batched per quarter window).
        connection_window_size: inbound flow-control window of the connection,
            shared by all calls.
        user_agent: the ``user-agent`` request header (``lbwire-grpc/`` and
            lbwire's version by default).
        proxy: the HTTP proxy to open connections through (a CONNECT
            tunnel; TLS, when configured, runs end to end through it), except
            to the hosts its ``no_proxy`` names; ``None`` connects directly.
            ``connect_timeout`` covers the proxy too.
        write_stall_timeout: seconds a write that the peer does not take
            (a frozen or dead peer) may go without progress before the
            connection fails (its calls with UNAVAILABLE). A write that began
            is finished even when its caller is cancelled, as half a frame
            would corrupt the connection; this bounds how long that caller
            waits (on TLS and on trio; plaintext asyncio writes never wait).

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
    user_agent: str = f"lbwire-grpc/{__version__}"
    proxy: Optional[HttpProxy] = None
    write_stall_timeout: float = 5.0

    def __post_init__(self) -> None:
        _positive("connect_timeout", self.connect_timeout)
        _positive("keepalive_timeout", self.keepalive_timeout)
        _positive("write_stall_timeout", self.write_stall_timeout)
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
        if self.ssl_context is not None and not _is_ssl_context(self.ssl_context):
            raise TypeError("ssl_context must be an ssl.SSLContext or None")
        if self.server_hostname is not None and self.ssl_context is None:
            raise ValueError("server_hostname needs an ssl_context")
        if not self.user_agent.isascii() or not self.user_agent.isprintable():
            raise ValueError("user_agent must be printable ASCII")
        if self.proxy is not None and not isinstance(self.proxy, HttpProxy):
            raise TypeError("proxy must be an lbwire.grpc.proxy.HttpProxy or None")


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be positive and finite")


def _is_ssl_context(value: object) -> bool:
    import ssl  # only with TLS: importing ssl is not free

    return isinstance(value, ssl.SSLContext)
