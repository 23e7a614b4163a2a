"""The hand-written message tables match protos/liftbridge/api.proto."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor as FD
from wire_reference import DESCRIPTOR_PATH, FILE, MESSAGE_CLASSES

import lbwire.wire as wire
from lbwire.wire import _codec as c

REPO = Path(__file__).resolve().parents[2]
PROTO = REPO / "protos" / "liftbridge" / "api.proto"

_SCALAR_KINDS = {
    FD.TYPE_INT32: c.K_INT32,
    FD.TYPE_INT64: c.K_INT64,
    FD.TYPE_UINT64: c.K_UINT64,
    FD.TYPE_BOOL: c.K_BOOL,
    FD.TYPE_ENUM: c.K_ENUM,
    FD.TYPE_STRING: c.K_STRING,
    FD.TYPE_BYTES: c.K_BYTES,
}
_NULLABLE_KINDS = {
    "NullableInt64": c.K_NULLABLE_INT64,
    "NullableInt32": c.K_NULLABLE_INT32,
    "NullableBool": c.K_NULLABLE_BOOL,
}
ENUM_NAMES = {
    "StartPosition": "StartPosition",
    "StopPosition": "StopPosition",
    "AckPolicy": "AckPolicy",
    "ActivityStreamOp": "ActivityStreamOp",
    "Ack.Error": "AckError",
    "PublishAsyncError.Code": "PublishAsyncErrorCode",
    "StreamMetadata.Error": "StreamMetadataError",
    "ConsumerGroupMetadata.Error": "ConsumerGroupMetadataError",
}


def _is_repeated(fd: FD) -> bool:
    # protobuf 7 replaced FieldDescriptor.label with is_repeated.
    if hasattr(fd, "is_repeated"):
        return bool(fd.is_repeated)
    return bool(fd.label == FD.LABEL_REPEATED)


def _expected_kind(fd: FD) -> tuple[int, str | None]:
    """Field kind and referenced Python class name our table should have."""
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        key, value = fd.message_type.fields
        if key.type == FD.TYPE_STRING and value.type == FD.TYPE_BYTES:
            return c.K_MAP_STR_BYTES, None
        assert key.type == FD.TYPE_INT32
        return c.K_MAP_INT32_MESSAGE, value.message_type.name
    repeated = _is_repeated(fd)
    if fd.type == FD.TYPE_MESSAGE:
        name = fd.message_type.name
        if name in _NULLABLE_KINDS:
            return _NULLABLE_KINDS[name], name
        return (c.K_REP_MESSAGE if repeated else c.K_MESSAGE), name
    if repeated:
        kind = {FD.TYPE_INT32: c.K_REP_INT32, FD.TYPE_STRING: c.K_REP_STRING}
        return kind[fd.type], None
    enum = ENUM_NAMES[fd.enum_type.full_name[len("proto.") :]] if fd.enum_type else None
    return _SCALAR_KINDS[fd.type], enum


def test_every_schema_message_has_a_class() -> None:
    names = set(FILE.message_types_by_name)
    assert len(names) == 50
    assert all(isinstance(getattr(wire, n), type) for n in names)
    assert {cls.__name__ for cls in MESSAGE_CLASSES} == names


@pytest.mark.parametrize("cls", MESSAGE_CLASSES, ids=lambda cls: cls.__name__)
def test_field_table_matches_descriptor(cls: type[c.WireMessage]) -> None:
    descriptor = FILE.message_types_by_name[cls.__name__]
    expected = []
    for fd in sorted(descriptor.fields, key=lambda fd: fd.number):
        kind, type_name = _expected_kind(fd)
        expected.append((fd.number, fd.name, kind, type_name))
    actual = [(f.number, f.name, f.kind, f.type.__name__ if f.type else None) for f in cls._FIELDS]
    assert actual == expected
    assert set(cls.__slots__) == {f.name for f in cls._FIELDS}


@pytest.mark.parametrize("proto_name", sorted(ENUM_NAMES))
def test_enum_matches_descriptor(proto_name: str) -> None:
    outer, _, inner = proto_name.partition(".")
    if inner:
        descriptor = FILE.message_types_by_name[outer].enum_types_by_name[inner]
    else:
        descriptor = FILE.enum_types_by_name[outer]
    enum = getattr(wire, ENUM_NAMES[proto_name])
    assert {m.name: m.value for m in enum} == {v.name: v.number for v in descriptor.values}


def test_nested_enums_are_reachable_like_protobufs() -> None:
    assert wire.Ack.Error is wire.AckError
    assert wire.PublishAsyncError.Code is wire.PublishAsyncErrorCode
    assert wire.StreamMetadata.Error is wire.StreamMetadataError
    assert wire.ConsumerGroupMetadata.Error is wire.ConsumerGroupMetadataError


def test_service_paths() -> None:
    service = FILE.services_by_name["API"]
    assert service.full_name == "proto.API"
    assert len(service.methods) == 16
    for method in service.methods:
        assert hasattr(wire, method.input_type.name)
        assert hasattr(wire, method.output_type.name)


@pytest.mark.skipif(importlib.util.find_spec("grpc_tools") is None, reason="needs grpcio-tools")
def test_committed_descriptor_is_up_to_date(tmp_path: Path) -> None:
    out = tmp_path / "api_descriptor.binpb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{REPO / 'protos'}",
            "--include_imports",
            f"--descriptor_set_out={out}",
            str(PROTO),
        ],
        check=True,
    )
    assert out.read_bytes() == DESCRIPTOR_PATH.read_bytes(), (
        "tests/wire/api_descriptor.binpb is stale; regenerate it with: "
        "python -m grpc_tools.protoc -Iprotos --include_imports "
        "--descriptor_set_out=tests/wire/api_descriptor.binpb "
        "protos/liftbridge/api.proto"
    )
