"""The health service's hand-written messages encode and decode like protobuf's.

The protobuf reference classes are built here from a descriptor of
grpc/health/v1/health.proto's two messages, written out field by field.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from hypothesis import given
from hypothesis import strategies as st

from lbwire.wire import HealthCheckRequest, HealthCheckResponse, HealthCheckResponseServingStatus


def _reference_classes() -> tuple[Any, Any]:
    fd = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="grpc/health/v1/health.proto", package="grpc.health.v1", syntax="proto3"
    )
    file.message_type.add(name="HealthCheckRequest").field.add(
        name="service", number=1, type=fd.TYPE_STRING, label=fd.LABEL_OPTIONAL
    )
    response = file.message_type.add(name="HealthCheckResponse")
    status = response.enum_type.add(name="ServingStatus")
    for member in HealthCheckResponseServingStatus:
        status.value.add(name=member.name, number=member.value)
    response.field.add(
        name="status",
        number=1,
        type=fd.TYPE_ENUM,
        type_name=".grpc.health.v1.HealthCheckResponse.ServingStatus",
        label=fd.LABEL_OPTIONAL,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return tuple(  # type: ignore[return-value]
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"grpc.health.v1.{name}"))
        for name in ("HealthCheckRequest", "HealthCheckResponse")
    )


PbRequest, PbResponse = _reference_classes()
# Open enums: values beyond the four known ones travel as they are.
statuses = st.integers(min_value=-(2**31), max_value=2**31 - 1)


@given(st.text())
def test_request_is_protobufs(service: str) -> None:
    data = PbRequest(service=service).SerializeToString()
    assert HealthCheckRequest(service=service).encode() == data
    assert HealthCheckRequest.decode(data).service == service


@given(statuses)
def test_response_is_protobufs(status: int) -> None:
    data = PbResponse(status=status).SerializeToString()
    assert HealthCheckResponse(status=status).encode() == data
    assert HealthCheckResponse.decode(data).status == status


def test_known_statuses_decode_as_members() -> None:
    data = PbResponse(status=2).SerializeToString()
    assert HealthCheckResponse.decode(data).status is HealthCheckResponseServingStatus.NOT_SERVING
