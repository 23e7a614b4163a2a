"""The two messages of the gRPC health service (`grpc.health.v1.Health`).

Written by hand on the generic codec rather than generated: they are not
Liftbridge's schema but gRPC's (grpc/health/v1/health.proto), and tiny::

    message HealthCheckRequest { string service = 1; }
    message HealthCheckResponse {
      enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; }
      ServingStatus status = 1;
    }

Both `Check` and `Watch` take a `HealthCheckRequest` and answer with
`HealthCheckResponse` (one, or a stream of them).
"""

from __future__ import annotations

from enum import IntEnum

from ._codec import K_ENUM, K_STRING, Field, WireMessage

__all__ = [
    "HEALTH_CHECK",
    "HEALTH_WATCH",
    "HealthCheckRequest",
    "HealthCheckResponse",
    "HealthCheckResponseServingStatus",
]

#: gRPC paths of the health service's two methods.
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
HEALTH_WATCH = "/grpc.health.v1.Health/Watch"


class HealthCheckResponseServingStatus(IntEnum):
    """A service's serving status."""

    UNKNOWN = 0
    SERVING = 1
    NOT_SERVING = 2
    SERVICE_UNKNOWN = 3  # only in Watch answers


class HealthCheckRequest(WireMessage):
    """The service whose status is asked for ("" is the server as a whole)."""

    __slots__ = ("service",)
    _FIELDS = (Field(1, "service", K_STRING),)

    service: str

    def __init__(self, *, service: str = "") -> None:
        self.service = service


class HealthCheckResponse(WireMessage):
    """A service's serving status."""

    __slots__ = ("status",)
    ServingStatus = HealthCheckResponseServingStatus
    _FIELDS = (Field(1, "status", K_ENUM, HealthCheckResponseServingStatus),)

    status: int

    def __init__(self, *, status: int = HealthCheckResponseServingStatus.UNKNOWN) -> None:
        self.status = status
