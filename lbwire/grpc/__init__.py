"""gRPC over HTTP/2 for lbwire: bytes in, bytes out, on anyio (asyncio or trio).

The sans-IO core is :mod:`lbwire.grpc.protocol`; :class:`Channel` is the anyio
transport over it. This layer never knows about protobuf.
"""

from .channel import Channel, StreamStreamCall, UnaryStreamCall
from .config import ChannelConfig
from .status import GRPCError, Metadata, MetadataValue, Status

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
