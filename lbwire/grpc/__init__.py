"""gRPC over HTTP/2 for lbwire: bytes in, bytes out, on anyio (asyncio or trio).

The sans-IO core is :mod:`lbwire.grpc.protocol` (it owns the whole HTTP/2
connection); :class:`Channel` runs it over one transport per backend
(:mod:`lbwire.grpc._backends`), one connection (:mod:`lbwire.grpc._connection`)
and one call object per call (:mod:`lbwire.grpc._call`). This layer never
knows about protobuf.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import ChannelConfig
from .status import GRPCError, Metadata, MetadataValue, Status

if TYPE_CHECKING:
    from .channel import Channel, StreamStreamCall, UnaryStreamCall

__all__ = [
    "Channel",
    "ChannelConfig",
    "GRPCError",
    "Metadata",
    "MetadataValue",
    "Status",
    "StreamStreamCall",
    "UnaryStreamCall",
]

_TRANSPORT = ("Channel", "StreamStreamCall", "UnaryStreamCall")


def __getattr__(name: str) -> Any:
    # The transport (the HTTP/2 core, the backends) loads with its first use, so that
    # importing lbwire's exceptions and types stays cheap.
    if name in _TRANSPORT:
        from . import channel

        return getattr(channel, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
