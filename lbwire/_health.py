"""A broker's gRPC health service (`grpc.health.v1.Health`): one check, or a watch.

What Liftbridge's statuses mean (server/health/health.go and server.go, both
generations): the service `proto.API` is SERVING from the moment the gRPC
server starts, before the broker has loaded its streams; it turns NOT_SERVING
only in the server's `Stop()` (SIGINT), just before every connection is
closed. The empty service name, the server as a whole, stays SERVING. SIGTERM
and SIGKILL end the process with no status change. So a status is a hint:
SERVING does not mean a partition can be read, and a broker can vanish
without ever reporting NOT_SERVING.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, AsyncGenerator

from . import wire
from ._address import Address, format_address
from .error import ErrorNotFound, from_grpc_error
from .error._decisions import decode_reply
from .grpc import GRPCError
from .types import HealthStatus

if TYPE_CHECKING:
    from ._routing import Router

__all__ = ["API_SERVICE", "check_health", "watch_health"]

#: The service name Liftbridge registers its health status under.
API_SERVICE = "proto.API"


def _status(value: int) -> HealthStatus:
    # A status newer than this client's table reads as UNKNOWN.
    try:
        return HealthStatus(value)
    except ValueError:
        return HealthStatus.UNKNOWN


async def check_health(
    router: Router, address: Address, service: str, timeout: float
) -> HealthStatus:
    """One Check call to one broker, without retries (it reports what it finds)."""
    try:
        response = await router.call(
            address,
            wire.HEALTH_CHECK,
            wire.HealthCheckRequest(service=service),
            wire.HealthCheckResponse,
            timeout=timeout,
        )
    except ErrorNotFound as exc:
        raise ErrorNotFound(
            f"{format_address(address)} has no health status for service {service!r} "
            f"(server: {exc})",
            status=exc.status,
        ) from None
    return _status(response.status)


async def watch_health(
    router: Router, address: Address, service: str
) -> AsyncGenerator[HealthStatus, None]:
    """A Watch call on the client's connection to `address`: each status the broker sends.

    Nothing held across `yield` but the call itself (no task group, no
    cancel scope): the connection's tasks run in the client's task group.
    """
    request = wire.HealthCheckRequest(service=service).encode()
    channel = router.connections.channel(address)
    try:
        async with channel.unary_stream(wire.HEALTH_WATCH, request) as call:
            async for data in call:
                response = decode_reply(
                    wire.HealthCheckResponse, data, method="Watch", broker=address
                )
                yield _status(response.status)
    except GRPCError as exc:
        text = exc.message or exc.status.name
        message = f"Health watch of {format_address(address)} ended: {text}"
        raise from_grpc_error(exc, message=message) from None
