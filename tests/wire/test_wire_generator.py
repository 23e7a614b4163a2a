"""scripts/gen_wire.py: the committed classes are current, stale ones are caught, and
constructs the codec cannot represent are refused with a location."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from helpers.scripts import load_script
from wire_reference import pb_class

import lbwire.wire as wire

REPO = Path(__file__).resolve().parents[2]
PROTO = REPO / "protos" / "liftbridge" / "api.proto"
GENERATED = REPO / "lbwire" / "wire" / "_generated.py"


gen: Any = load_script("gen_wire")


def import_generated(path: Path, name: str) -> ModuleType:
    """Import a generated module as if it sat beside lbwire.wire._codec."""
    full_name = f"lbwire.wire.{name}"
    spec = importlib.util.spec_from_file_location(full_name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[full_name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[full_name]
    return module


def generate_text(proto_text: str) -> str:
    return str(gen.generate(gen.parse(proto_text, "test.proto"), "test.proto"))


SMALL_PROTO = """
syntax = "proto3";
package demo;

// A thing with every kind of field
// the generator supports.
message Thing {
  // Its colour.
  enum Colour {
    RED = 0;
    BLUE = 1;
  }
  reserved 7, 9 to 11;
  string name = 1;  // a trailing comment is not a docstring
  repeated int32 sizes = 2 [packed = true];
  map<string, bytes> tags = 3;
  map<int32, Part> parts = 4;
  Colour colour = 5;
  repeated Part extra = 6;
  NullableInt64 limit = 8;
  .demo.Part main = 12;
}

message Part {
  uint64 id = 1 [jstype = JS_STRING];
  bool ok = 2;
}

message NullableInt64 {
  int64 value = 1;
}
"""


def test_committed_module_is_what_the_schema_generates() -> None:
    assert gen.main(["--check"]) == 0


def test_check_reports_a_stale_module(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "_generated.py"
    assert gen.main(["--output", str(out)]) == 0
    assert gen.main(["--check", "--output", str(out)]) == 0

    out.write_text(out.read_text().replace("reverse", "backwards"))
    assert gen.main(["--check", "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "is stale" in err
    assert "run: python scripts/gen_wire.py" in err
    assert '+        Field(12, "reverse", K_BOOL),' in err


def test_check_reports_a_schema_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proto = tmp_path / "api.proto"
    proto.write_text(
        PROTO.read_text().replace("  bool reverse = 12;", "  bool reverse = 12;\n  bool x = 13;")
    )
    assert gen.main(["--check", "--proto", str(proto), "--output", str(GENERATED)]) == 1
    assert "is stale" in capsys.readouterr().err


def test_missing_module_is_stale(tmp_path: Path) -> None:
    assert gen.main(["--check", "--output", str(tmp_path / "absent.py")]) == 1


def test_generated_classes_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "small.py"
    path.write_text(generate_text(SMALL_PROTO))
    small = import_generated(path, "_small_under_test")

    thing = small.Thing(
        name="n",
        sizes=[1, -2],
        tags={"a": b"1"},
        parts={3: small.Part(id=2**64 - 1, ok=True)},
        colour=small.ThingColour.BLUE,
        extra=[small.Part(), small.Part(ok=True)],
        limit=0,
        main=small.Part(id=5),
    )
    data = thing.encode()
    assert small.Thing.decode(data) == thing
    assert small.Thing.decode(data).limit == 0  # present, not None
    assert small.Thing.decode(b"") == small.Thing()
    assert small.Thing().limit is None
    assert small.Thing.Colour is small.ThingColour
    assert small.Thing().colour is small.ThingColour.RED
    assert small.Thing.__doc__ == "A thing with every kind of field the generator supports."
    assert small.ThingColour.__doc__ == "Its colour."
    assert small.Part.__doc__ == "``Part``."


def test_generated_api_matches_protobuf_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "api.py"
    path.write_text(generate_text(PROTO.read_text()))
    api = import_generated(path, "_api_under_test")

    request = api.SubscribeRequest(stream="s", startPosition=api.StartPosition.LATEST, reverse=True)
    pb = pb_class(wire.SubscribeRequest)(stream="s", startPosition=3, reverse=True)
    assert (
        request.encode()
        == pb.SerializeToString()
        == wire.SubscribeRequest(
            stream="s", startPosition=wire.StartPosition.LATEST, reverse=True
        ).encode()
    )
    assert api.SubscribeRequest.decode(pb.SerializeToString()) == request


def test_reverse_is_field_12_of_subscribe_requests() -> None:
    assert wire.SubscribeRequest(reverse=True).encode() == b"\x60\x01"
    assert wire.SubscribeRequest.decode(b"\x60\x01").reverse is True
    assert wire.SubscribeRequest().reverse is False


def test_activity_stream_events_decode() -> None:
    # What client.activity() will read from the __activity stream.
    pb = pb_class(wire.ActivityStreamEvent)(id=7, op=5)
    pb.joinConsumerGroupOp.groupId = "g"
    pb.joinConsumerGroupOp.consumerId = "c"
    pb.joinConsumerGroupOp.streams.extend(["a", "b"])
    event = wire.ActivityStreamEvent.decode(pb.SerializeToString())
    assert event.id == 7
    assert event.op is wire.ActivityStreamOp.JOIN_CONSUMER_GROUP
    assert event.joinConsumerGroupOp == wire.JoinConsumerGroupOp(
        groupId="g", consumerId="c", streams=["a", "b"]
    )
    assert event.createStreamOp is None


def test_hand_tuned_methods_replace_the_generated_ones() -> None:
    # messages.py installs them; a fresh import of the generated module has the
    # generic ones, which the fast paths must agree with (test_wire_vs_protobuf).
    assert wire.Message.decode.__func__.__module__ == "lbwire.wire.messages"  # type: ignore[attr-defined]
    assert wire.PublishRequest.encode.__module__ == "lbwire.wire.messages"
    assert wire.Ack.decode.__func__.__module__ == "lbwire.wire.messages"  # type: ignore[attr-defined]
    assert wire.PublishResponse.decode.__func__.__module__ == "lbwire.wire.messages"  # type: ignore[attr-defined]


BODY = 'syntax = "proto3";\n'


@pytest.mark.parametrize(
    ("proto", "where", "says"),
    [
        pytest.param(
            BODY + "message A {\n  oneof x {\n    string a = 1;\n  }\n}\n",
            "test.proto:3:3",
            "oneof fields are not supported",
            id="oneof",
        ),
        pytest.param(
            BODY + "message A {\n  optional string a = 1;\n}\n",
            "test.proto:3:3",
            "'optional'",
            id="optional",
        ),
        pytest.param('syntax = "proto2";\n', "test.proto:1:10", "only proto3", id="proto2"),
        pytest.param(BODY + 'import "other.proto";\n', "test.proto:2:1", "imports", id="import"),
        pytest.param(
            BODY + "message A {\n  double d = 1;\n}\n",
            "test.proto:3:3",
            "field type double is not supported",
            id="double",
        ),
        pytest.param(
            BODY + "message A {\n  map<string, string> m = 1;\n}\n",
            "test.proto:3:3",
            "map<string, string> is not supported",
            id="map-string-string",
        ),
        pytest.param(
            BODY + "message A {\n  B b = 1;\n}\n",
            "test.proto:3:3",
            "unknown type B",
            id="unknown-type",
        ),
        pytest.param(
            BODY + "message A {\n  A next = 1;\n}\n",
            "test.proto:2:1",
            "recursive messages are not supported",
            id="recursive",
        ),
        pytest.param(
            BODY + "message A {\n  string a = 1;\n  string b = 1;\n}\n",
            "test.proto:4:3",
            "field number 1 is used by a too",
            id="duplicate-number",
        ),
        pytest.param(
            BODY + "message A {\n  string encode = 1;\n}\n",
            "test.proto:3:3",
            "field name 'encode' cannot be a Python attribute",
            id="method-name",
        ),
        pytest.param(
            BODY + "message A {\n  string from = 1;\n}\n",
            "test.proto:3:3",
            "field name 'from' cannot be a Python attribute",
            id="keyword",
        ),
        pytest.param(
            BODY + "enum E {\n  A = 1;\n}\n",
            "test.proto:2:1",
            "first value of a proto3 enum must be 0",
            id="enum-without-zero",
        ),
        pytest.param(
            BODY + "message A {\n  string a = 1\n}\n",
            "test.proto:4:1",
            "expected ';', found '}'",
            id="syntax-error",
        ),
    ],
)
def test_unsupported_constructs_are_refused_with_their_location(
    proto: str, where: str, says: str
) -> None:
    with pytest.raises(gen.ProtoError) as info:
        generate_text(proto)
    assert str(info.value).startswith(where + ": ")
    assert says in str(info.value)


def test_command_line_reports_an_unsupported_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proto = tmp_path / "bad.proto"
    proto.write_text(BODY + "message A {\n  oneof x {\n    string a = 1;\n  }\n}\n")
    out = tmp_path / "out.py"
    assert gen.main(["--proto", str(proto), "--output", str(out)]) == 2
    assert "oneof fields are not supported" in capsys.readouterr().err
    assert not out.exists()
