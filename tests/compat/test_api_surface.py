"""lbwire's public API against gufo-liftbridge 0.2.0's, by introspection.

A program migrates from gufo-liftbridge by rewriting `gufo.liftbridge` to
`lbwire` in its imports, so every public name it can import from
`gufo.liftbridge.client`, `.types` and `.error` must exist in lbwire's module
of the same name, with the same call signature (lbwire may add keyword
arguments after gufo's), the same enum values, the same dataclass fields in
the same order (lbwire may append fields with defaults) and exception classes
of the same names (lbwire's may have more bases).

Where lbwire differs on purpose, the difference is listed here with its reason
(`ABSENT_ON_PURPOSE`, `DIFFERENT_ON_PURPOSE`); gaps that should be closed are
`KNOWN_GAPS`, expected failures that turn into passes once fixed.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import types
from typing import Any, Dict, List, Tuple

import pytest

gufo_client = pytest.importorskip("gufo.liftbridge.client")
import gufo.liftbridge.api_pb2 as gufo_pb  # noqa: E402
import gufo.liftbridge.error as gufo_error  # noqa: E402
import gufo.liftbridge.types as gufo_types  # noqa: E402

import lbwire.client as lb_client  # noqa: E402
import lbwire.error as lb_error  # noqa: E402
import lbwire.types as lb_types  # noqa: E402

MODULES = [
    (gufo_client, lb_client),
    (gufo_types, lb_types),
    (gufo_error, lb_error),
]

# gufo-liftbridge module names that lbwire deliberately does not provide,
# with the reason. Everything here is an implementation detail of gufo's
# grpcio transport, or a module gufo imported for its own use.
ABSENT_ON_PURPOSE: Dict[str, str] = {
    # grpcio / generated-stub plumbing: lbwire has its own gRPC layer.
    "gufo.liftbridge.client.APIStub": "grpcio generated stub",
    "gufo.liftbridge.client.AioRpcError": "grpcio exception; lbwire raises LiftbridgeError",
    "gufo.liftbridge.client.ChannelConnectivity": "grpcio enum",
    "gufo.liftbridge.client.StatusCode": "grpcio enum",
    "gufo.liftbridge.client.insecure_channel": "grpcio function",
    "gufo.liftbridge.client.GRPCChannel": "gufo's grpcio channel wrapper",
    "gufo.liftbridge.client.rpc_error": "gufo's grpcio error translator",
    "gufo.liftbridge.client.BROKER_PARTS": "gufo's address parser constant",
    "gufo.liftbridge.client.is_ipv4": "gufo's address helper",
    "gufo.liftbridge.error.AioRpcError": "grpcio exception",
    "gufo.liftbridge.error.StatusCode": "grpcio enum",
    "gufo.liftbridge.error.RPC_CODE_TO_ERR": "grpcio status table; lbwire's is error._BY_STATUS",
    "gufo.liftbridge.error.rpc_error": "gufo's grpcio error translator",
    "gufo.liftbridge.error.is_no_metada_leader": "gufo's grpcio error predicate",
    # Attributes of LiftbridgeClient.
    "LiftbridgeClient.GRPC_RESTARTABLE_CODES": "grpcio StatusCodes gufo retries on",
    "LiftbridgeClient().channels": "gufo's grpcio channels by broker",
    "LiftbridgeClient().open_brokers": "gufo's list of brokers with a channel",
    "LiftbridgeClient().leaders": "gufo's routing table (lbwire: a MetadataCache)",
    "LiftbridgeClient().isrs": "gufo's ISR table (lbwire: a MetadataCache)",
}

# Names a gufo program can import today that lbwire should provide as well.
KNOWN_GAPS: Dict[str, str] = {}

# Whole gufo-liftbridge modules a program might import, and what lbwire has.
MODULE_MAP_GAPS: Dict[str, str] = {
    "gufo.liftbridge.api_pb2": "generated protobuf classes; lbwire's are lbwire.wire",
    "gufo.liftbridge.api_pb2_grpc": "grpcio stubs; no equivalent (lbwire.grpc is its own)",
    "gufo.liftbridge.compressor": "compress()/decompress(); lbwire's are lbwire.compression",
    "gufo.liftbridge.liftbridge": "Liftbridge test server; lbwire's is lbwire.testing",
    "gufo.liftbridge.utils": "is_ipv4(); internal helper",
}

# Intentional differences in behaviour or type, checked by the tests below
# (and, for publish, in test_gufo_interop.py).
DIFFERENT_ON_PURPOSE = {
    "ErrorMessageSizeExceeded": "also a ValueError (too-large input), still a LiftbridgeError",
    "publish": "returns the Ack (None for AckPolicy.NONE); gufo returns None",
    "PublishRequest.expectedOffset": "lbwire sends -1 when no expected_offset is given "
    "(go-liftbridge's 'do not check'); gufo leaves it 0, which a stream with optimistic "
    "concurrency control reads as 'must be offset 0'. Other streams ignore the field.",
}


def _is_stdlib_helper(value: Any) -> bool:
    """Modules and typing names a gufo module imported for its own use."""
    if isinstance(value, types.ModuleType):
        return True
    module = getattr(value, "__module__", None)
    return module in (
        "typing",
        "collections.abc",
        "types",
        "builtins",
        "logging",
        "enum",
        "dataclasses",
    )


def _public_names(module: types.ModuleType) -> List[str]:
    return sorted(
        name
        for name in vars(module)
        if not name.startswith("_") and not _is_stdlib_helper(getattr(module, name))
    )


def _module_names() -> List[Tuple[str, str]]:
    return [(gufo.__name__, name) for gufo, _ in MODULES for name in _public_names(gufo)]


def _mirrored_module_names() -> List[Tuple[str, str]]:
    return [(m, n) for m, n in _module_names() if f"{m}.{n}" not in ABSENT_ON_PURPOSE]


@pytest.mark.parametrize(("gufo_module", "name"), _mirrored_module_names())
def test_module_has_every_public_name(
    request: pytest.FixtureRequest, gufo_module: str, name: str
) -> None:
    qualified = f"{gufo_module}.{name}"
    if qualified in KNOWN_GAPS:
        request.applymarker(pytest.mark.xfail(reason=KNOWN_GAPS[qualified], strict=True))
    lbwire_module = importlib.import_module(gufo_module.replace("gufo.liftbridge", "lbwire"))
    assert hasattr(lbwire_module, name), f"{lbwire_module.__name__} has no {name}"


def test_the_reasoned_lists_name_real_gufo_names() -> None:
    """The allow-lists stay honest: each entry names something gufo has."""
    gufo_names = {f"{m}.{n}" for m, n in _module_names()}
    for entry in [*ABSENT_ON_PURPOSE, *KNOWN_GAPS]:
        if entry.startswith("gufo."):
            assert entry in gufo_names, entry


def test_what_is_absent_on_purpose_is_absent() -> None:
    """Each name ABSENT_ON_PURPOSE leaves out of the surface tests is really not in lbwire.

    (If lbwire grows one of them, it belongs in the surface tests instead.)
    """
    for entry in ABSENT_ON_PURPOSE:
        if entry.startswith("gufo."):
            module, _, name = entry.rpartition(".")
            lbwire_module = importlib.import_module(module.replace("gufo.liftbridge", "lbwire"))
            assert not hasattr(lbwire_module, name), entry
        elif entry.startswith("LiftbridgeClient()."):
            lb = lb_client.LiftbridgeClient(["127.0.0.1:9292"])
            gufo = gufo_client.LiftbridgeClient(["127.0.0.1:9292"])
            name = entry.split(".", 1)[1]
            assert hasattr(gufo, name), entry
            assert not hasattr(lb, name), entry
        else:
            name = entry.split(".", 1)[1]
            assert hasattr(gufo_client.LiftbridgeClient, name), entry
            assert not hasattr(lb_client.LiftbridgeClient, name), entry


@pytest.mark.parametrize("module", sorted(MODULE_MAP_GAPS))
def test_modules_lbwire_does_not_mirror(module: str) -> None:
    importlib.import_module(module)  # gufo has it
    with pytest.raises(ImportError):
        importlib.import_module(module.replace("gufo.liftbridge", "lbwire"))


def test_the_documented_import_paths_resolve_to_the_same_objects() -> None:
    # gufo documents `from gufo.liftbridge.client import LiftbridgeClient,
    # StartPosition` (and AckPolicy); lbwire's client module re-exports the
    # very classes of lbwire.types.
    assert lb_client.StartPosition is lb_types.StartPosition
    assert lb_client.AckPolicy is lb_types.AckPolicy
    assert lb_client.Message is lb_types.Message
    for name in ("CURSOR_STREAM", "DEFAULT_MAX_MESSAGE_SIZE"):
        assert getattr(lb_client, name) == getattr(gufo_client, name)


# --------------------------------------------------------------------------
# LiftbridgeClient


def _client_members() -> List[str]:
    cls = gufo_client.LiftbridgeClient
    return sorted(
        name
        for name in vars(cls)
        if not name.startswith("_") or name in ("__init__", "__aenter__", "__aexit__")
    )


def _kind(cls: type, name: str) -> str:
    raw = inspect.getattr_static(cls, name)
    if isinstance(raw, staticmethod):
        return "staticmethod"
    if isinstance(raw, classmethod):
        return "classmethod"
    if isinstance(raw, property):
        return "property"
    func = getattr(cls, name)
    if inspect.isasyncgenfunction(func):
        return "async generator"
    if inspect.iscoroutinefunction(func):
        return "coroutine"
    if callable(func):
        return "function"
    return "attribute"


@pytest.mark.parametrize(
    "name", [n for n in _client_members() if f"LiftbridgeClient.{n}" not in ABSENT_ON_PURPOSE]
)
def test_client_member(name: str) -> None:
    gufo_cls, lb_cls = gufo_client.LiftbridgeClient, lb_client.LiftbridgeClient
    assert hasattr(lb_cls, name), f"lbwire LiftbridgeClient has no {name}"
    assert _kind(lb_cls, name) == _kind(gufo_cls, name)
    if _kind(gufo_cls, name) == "attribute":
        return
    gufo_sig = inspect.signature(getattr(gufo_cls, name))
    lb_sig = inspect.signature(getattr(lb_cls, name))
    gufo_params = list(gufo_sig.parameters.values())
    lb_params = list(lb_sig.parameters.values())
    # gufo's parameters come first, in gufo's order, with gufo's kind and default.
    assert [p.name for p in lb_params[: len(gufo_params)]] == [p.name for p in gufo_params], (
        f"{name}{lb_sig} does not start with gufo's {name}{gufo_sig}"
    )
    for g, lb in zip(gufo_params, lb_params):
        assert lb.kind == g.kind, f"{name}({g.name}): {lb.kind} in lbwire, {g.kind} in gufo"
        assert lb.default == g.default, (
            f"{name}({g.name}=): default {lb.default!r} in lbwire, {g.default!r} in gufo"
        )
    # Whatever lbwire adds is optional and keyword-only: gufo-style calls,
    # positional or keyword, bind exactly as before.
    for extra in lb_params[len(gufo_params) :]:
        assert extra.kind in (extra.KEYWORD_ONLY, extra.VAR_KEYWORD), (
            f"{name}: added parameter {extra} must be keyword-only"
        )
        assert extra.kind == extra.VAR_KEYWORD or extra.default is not extra.empty, (
            f"{name}: added parameter {extra.name} must have a default"
        )


def test_client_constructor_attributes() -> None:
    """The constructor keeps gufo's public attributes, with the same values."""
    kwargs: Dict[str, Any] = dict(
        max_message_size=1 << 20,
        enable_http_proxy=True,
        compression_method="zlib",
        compression_threshold=100,
        encoding_header="X-Enc",
        publish_async_ack_timeout=3.0,
        metadata_leader_timeout=2.0,
        metadata_leader_dev=0.5,
    )
    brokers = ["127.0.0.1:9292", "127.0.0.2:9293"]
    gufo = gufo_client.LiftbridgeClient(brokers, **kwargs)
    lb = lb_client.LiftbridgeClient(brokers, **kwargs)
    for attr, value in vars(gufo).items():
        if f"LiftbridgeClient().{attr}" in ABSENT_ON_PURPOSE:
            continue
        assert getattr(lb, attr) == value, attr
    # Both refuse an empty seed list and malformed seeds with ValueError.
    for bad in ([], ["no-port"], ["host:notaport"]):
        with pytest.raises(ValueError, match=r"(?i)seed|broker|port|address"):
            gufo_client.LiftbridgeClient(bad)
        with pytest.raises(ValueError, match=r"(?i)seed|broker|port|address"):
            lb_client.LiftbridgeClient(bad)


def test_get_publish_request_builds_the_same_message() -> None:
    """Same arguments, same PublishRequest on the wire as gufo's."""
    gufo = gufo_client.LiftbridgeClient(["127.0.0.1:9292"], compression_method="zlib")
    lb = lb_client.LiftbridgeClient(["127.0.0.1:9292"], compression_method="zlib")
    calls: List[Dict[str, Any]] = [
        {},
        {"stream": "s"},
        {"stream": "s", "partition": 3, "key": b"k", "headers": {"a": b"1", "b": b""}},
        {"stream": "s", "ack_inbox": "inbox", "correlation_id": "cid"},
        {"stream": "s", "ack_policy": gufo_types.AckPolicy.ALL},
        {"stream": "s", "ack_policy": gufo_types.AckPolicy.NONE},
        {"stream": "s", "auto_compress": True, "headers": {"h": b"v"}},
        {"stream": "s", "partition": 0, "key": b""},
    ]
    for kwargs in calls:
        g = gufo.get_publish_request(b"value " * 20, **kwargs)
        lb_kwargs = dict(kwargs)
        if "ack_policy" in kwargs:
            lb_kwargs["ack_policy"] = lb_types.AckPolicy(int(kwargs["ack_policy"]))
        lbr = lb.get_publish_request(b"value " * 20, **lb_kwargs)
        # Compare as messages (map entries may be encoded in any order).
        decoded = gufo_pb.PublishRequest.FromString(lbr.encode())
        assert g.expectedOffset == 0
        assert decoded.expectedOffset in (0, -1), DIFFERENT_ON_PURPOSE[
            "PublishRequest.expectedOffset"
        ]
        decoded.expectedOffset = lbr.expectedOffset = 0
        assert decoded == g, kwargs
        # And attribute by attribute, with protobuf's names.
        for field in gufo_pb.PublishRequest.DESCRIPTOR.fields:
            mine = getattr(lbr, field.name)
            theirs = getattr(g, field.name)
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                assert dict(mine) == dict(theirs), field.name
            elif field.message_type is None:
                assert mine == theirs, field.name


def test_ack_has_protobufs_field_names() -> None:
    """Acks (from publish, publish_bulk) carry gufo's protobuf Ack attributes."""
    ack = lb_types.Ack()
    for field in gufo_pb.Ack.DESCRIPTOR.fields:
        assert hasattr(ack, field.name), field.name


# --------------------------------------------------------------------------
# types


@pytest.mark.parametrize("name", ["AckPolicy", "StartPosition"])
def test_enum(name: str) -> None:
    gufo_enum = getattr(gufo_types, name)
    lb_enum = getattr(lb_types, name)
    assert issubclass(lb_enum, enum.IntEnum)
    assert {m.name: m.value for m in gufo_enum} == {m.name: m.value for m in lb_enum}
    for member in gufo_enum:
        assert lb_enum[member.name] == member  # IntEnums: equal as numbers too
    if name == "StartPosition":
        assert lb_enum.RESUME == 9999


def _dataclasses() -> List[str]:
    return sorted(
        name
        for name, value in vars(gufo_types).items()
        if isinstance(value, type) and dataclasses.is_dataclass(value)
    )


def test_the_dataclasses_checked_are_the_ones_asked_for() -> None:
    assert _dataclasses() == sorted(
        ["Broker", "PartitionMetadata", "StreamMetadata", "Metadata", "Message", "RetentionPolicy"]
    )


@pytest.mark.parametrize("name", _dataclasses())
def test_dataclass_fields(name: str) -> None:
    gufo_cls = getattr(gufo_types, name)
    lb_cls = getattr(lb_types, name)
    assert dataclasses.is_dataclass(lb_cls)
    gufo_fields = dataclasses.fields(gufo_cls)
    lb_fields = dataclasses.fields(lb_cls)
    assert [f.name for f in lb_fields[: len(gufo_fields)]] == [f.name for f in gufo_fields]
    for g, lb in zip(gufo_fields, lb_fields):
        assert (lb.default, lb.default_factory) == (g.default, g.default_factory), g.name
    for extra in lb_fields[len(gufo_fields) :]:
        assert (
            extra.default is not dataclasses.MISSING
            or extra.default_factory is not dataclasses.MISSING
        ), f"{name}.{extra.name} is an added field without a default"
    assert lb_cls.__dataclass_params__.frozen == gufo_cls.__dataclass_params__.frozen
    assert lb_cls.__dataclass_params__.eq == gufo_cls.__dataclass_params__.eq


SAMPLES: Dict[str, Tuple[Any, ...]] = {
    "Broker": ("b1", "127.0.0.1", 9292),
    "PartitionMetadata": (0, "b1", ["b1"], ["b1"], 5, 5, False),
    "StreamMetadata": ("s", "subj", {}),
    "Metadata": ([], []),
    "Message": (b"v", "subj", 7, 123, b"k", 0, {"h": b"x"}),
    "RetentionPolicy": (1, 2, 3, 4),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_dataclass_positional_construction(name: str) -> None:
    """gufo-style positional and keyword construction give the same field values."""
    args = SAMPLES[name]
    gufo_obj = getattr(gufo_types, name)(*args)
    lb_obj = getattr(lb_types, name)(*args)
    gufo_values = dataclasses.astuple(gufo_obj)
    assert dataclasses.astuple(lb_obj)[: len(gufo_values)] == gufo_values
    as_kwargs = dataclasses.asdict(gufo_obj)
    assert getattr(lb_types, name)(**as_kwargs) == lb_obj


# --------------------------------------------------------------------------
# errors


def _gufo_exceptions() -> List[str]:
    return sorted(
        name
        for name, value in vars(gufo_error).items()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == gufo_error.__name__
    )


def test_the_exceptions_checked_are_the_ones_asked_for() -> None:
    assert _gufo_exceptions() == sorted(
        [
            "LiftbridgeError",
            "ErrorNotFound",
            "ErrorAlreadyExists",
            "ErrorChannelClosed",
            "ErrorUnavailable",
            "ErrorMessageSizeExceeded",
            "ErrorNoMetadataLeader",
        ]
    )


@pytest.mark.parametrize("name", _gufo_exceptions())
def test_exception_class(name: str) -> None:
    gufo_cls = getattr(gufo_error, name)
    lb_cls = getattr(lb_error, name)
    # Every gufo base of the class maps to an lbwire base of the same name.
    for base in gufo_cls.__mro__:
        if base.__module__ == gufo_error.__name__:
            assert issubclass(lb_cls, getattr(lb_error, base.__name__)), base.__name__
        elif issubclass(base, BaseException):
            assert issubclass(lb_cls, base), base.__name__
    # gufo raises them bare and with the server's text.
    assert str(lb_cls()) == str(gufo_cls())
    assert str(lb_cls("details")) == str(gufo_cls("details")) == "details"
    assert lb_cls("details").args == gufo_cls("details").args
    extra = {b.__name__ for b in lb_cls.__mro__} - {b.__name__ for b in gufo_cls.__mro__}
    if name == "ErrorMessageSizeExceeded":
        assert extra == {"ValueError"}, DIFFERENT_ON_PURPOSE[name]
    else:
        assert extra == set()


def test_exceptions_are_exported_from_the_package() -> None:
    import lbwire

    for name in _gufo_exceptions():
        assert getattr(lbwire, name) is getattr(lb_error, name)


# --------------------------------------------------------------------------
# documented behaviour differences


@pytest.mark.anyio
async def test_client_works_without_its_async_with_block_like_gufo() -> None:
    """gufo's client also works without `async with`; so does lbwire's.

    Each call outside the block gets a short-lived connection of its own
    (tests/client/test_outside_block.py); here nothing answers at the port, so
    the call ends with the error any call to a dead broker ends with.
    """
    client = lb_client.LiftbridgeClient(
        ["127.0.0.1:9"], retry_policy=lb_client.RetryPolicy(attempts=2, max_time=1.0)
    )
    with pytest.raises(lb_error.ErrorUnavailable):
        await client.get_metadata()


# --------------------------------------------------------------------------
# Same call, same request: what each client would send, captured before it
# reaches the network (gufo's stub call or lbwire's call layer is replaced).


class _Captured(Exception):
    """Raised by the stand-ins once the request is captured."""


class _GufoStub:
    """Stands in for gufo's GRPCChannel: records the request of any RPC."""

    def __init__(self, sink: List[Tuple[str, Any]]) -> None:
        self.broker = "127.0.0.1:9292"
        self._sink = sink

    def __getattr__(self, method: str) -> Any:
        async def rpc(request: Any) -> Any:
            self._sink.append((method, request))
            return gufo_pb.FetchCursorResponse(offset=5)  # enough for every caller here

        return rpc


CREATE_CASES: List[Dict[str, Any]] = [
    {},
    {"subject": "subj", "group": "g", "replication_factor": -1, "partitions": 4},
    {"minisr": 2, "enable_compact": True},
    {"enable_compact": False},
    {"retention_max_age": 3600, "retention_max_bytes": 1 << 20},
    {"segment_max_age": 60, "segment_max_bytes": 1 << 16},
    {"auto_pause_time": 30},
    {"auto_pause_time": 30, "auto_pause_disable_if_subscribers": True},
    {"auto_pause_disable_if_subscribers": True},  # ignored without auto_pause_time
]

SUBSCRIBE_CASES: List[Dict[str, Any]] = [
    {},
    {"partition": 2},
    {"start_position": gufo_types.StartPosition.EARLIEST},
    {"start_position": gufo_types.StartPosition.LATEST, "resume": True},
    {"start_offset": 17},
    {"start_offset": 0},
    {"start_timestamp": 1_700_000_000.25},
    {"start_position": gufo_types.StartPosition.NEW_ONLY, "allow_isr": True},
]


def _lb_kwargs(kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """The same arguments with lbwire's enums in place of gufo's."""
    out = dict(kwargs)
    if "start_position" in out:
        out["start_position"] = lb_types.StartPosition(int(out["start_position"]))
    return out


class TestSameRequests:
    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"  # gufo's code runs here

    @pytest.fixture
    def gufo_sent(self, monkeypatch: pytest.MonkeyPatch) -> List[Tuple[str, Any]]:
        sink: List[Tuple[str, Any]] = []

        async def channel(self: Any, *args: Any) -> _GufoStub:
            return _GufoStub(sink)

        cls = gufo_client.LiftbridgeClient
        monkeypatch.setattr(cls, "_get_channel", channel)
        monkeypatch.setattr(cls, "_get_leader_channel", channel)

        async def subscribe(self: Any, req: Any, **kwargs: Any) -> Any:
            sink.append(("Subscribe", req))
            raise _Captured
            yield  # pragma: no cover - makes this an async generator

        monkeypatch.setattr(cls, "_subscribe", subscribe)
        return sink

    @pytest.fixture
    def lbwire_sent(self, monkeypatch: pytest.MonkeyPatch) -> List[Tuple[str, Any]]:
        sink: List[Tuple[str, Any]] = []
        cls = lb_client.LiftbridgeClient

        async def call_any(
            self: Any, method: str, request: Any, response_type: Any, **kw: Any
        ) -> Any:
            sink.append((method, request))
            return response_type()

        async def cursor_call(
            self: Any,
            stream: str,
            partition: int,
            cursor_id: str,
            method: str,
            request: Any,
            response_type: Any,
        ) -> Any:
            sink.append((method, request))
            return response_type(offset=5) if method == "FetchCursor" else response_type()

        async def subscribe_once(self: Any, request: Any, setup_timeout: Any) -> Any:
            sink.append(("Subscribe", request))
            raise _Captured
            yield  # pragma: no cover - makes this an async generator

        monkeypatch.setattr(cls, "_call_any", call_any)
        monkeypatch.setattr(cls, "_cursor_leader_call", cursor_call)
        monkeypatch.setattr(cls, "_subscribe_once", subscribe_once)
        return sink

    @staticmethod
    def _same(gufo_sent: List[Tuple[str, Any]], lbwire_sent: List[Tuple[str, Any]]) -> None:
        assert [m for m, _ in lbwire_sent] == [m for m, _ in gufo_sent]
        for (method, theirs), (_, mine) in zip(gufo_sent, lbwire_sent):
            decoded = type(theirs).FromString(mine.encode())
            assert decoded == theirs, f"{method}: lbwire {decoded} gufo {theirs}"

    @pytest.mark.anyio
    @pytest.mark.parametrize("kwargs", CREATE_CASES)
    async def test_create_stream(
        self,
        kwargs: Dict[str, Any],
        gufo_sent: List[Tuple[str, Any]],
        lbwire_sent: List[Tuple[str, Any]],
    ) -> None:
        await gufo_client.LiftbridgeClient(["127.0.0.1:9292"]).create_stream("s", **kwargs)
        await lb_client.LiftbridgeClient(["127.0.0.1:9292"]).create_stream("s", **kwargs)
        if "enable_compact" not in kwargs:
            # The one intended difference (issue 10, item 13): gufo always
            # sends compactEnabled (off unless asked); lbwire sends nothing
            # the caller did not set, so the server's default applies.
            (_, gufo_request), (_, lb_request) = gufo_sent[0], lbwire_sent[0]
            assert gufo_request.HasField("compactEnabled")
            assert not type(gufo_request).FromString(lb_request.encode()).HasField("compactEnabled")
            gufo_request.ClearField("compactEnabled")
        self._same(gufo_sent, lbwire_sent)

    @pytest.mark.anyio
    async def test_delete_stream_and_metadata(
        self, gufo_sent: List[Tuple[str, Any]], lbwire_sent: List[Tuple[str, Any]]
    ) -> None:
        gufo = gufo_client.LiftbridgeClient(["127.0.0.1:9292"])
        lb = lb_client.LiftbridgeClient(["127.0.0.1:9292"])
        for client in (gufo, lb):
            await client.delete_stream("s")
        self._same(gufo_sent, lbwire_sent)

    @pytest.mark.anyio
    async def test_cursors(
        self, gufo_sent: List[Tuple[str, Any]], lbwire_sent: List[Tuple[str, Any]]
    ) -> None:
        gufo = gufo_client.LiftbridgeClient(["127.0.0.1:9292"])
        lb = lb_client.LiftbridgeClient(["127.0.0.1:9292"])
        for client in (gufo, lb):
            await client.set_cursor("s", 1, "c", 41)  # stores 42 in both
            assert await client.get_cursor("s", 1, "c") == 5
        self._same(gufo_sent, lbwire_sent)
        assert lbwire_sent[0][1].offset == 42

    @pytest.mark.anyio
    @pytest.mark.parametrize("kwargs", SUBSCRIBE_CASES)
    async def test_subscribe(
        self,
        kwargs: Dict[str, Any],
        gufo_sent: List[Tuple[str, Any]],
        lbwire_sent: List[Tuple[str, Any]],
    ) -> None:
        gufo = gufo_client.LiftbridgeClient(["127.0.0.1:9292"])
        lb = lb_client.LiftbridgeClient(["127.0.0.1:9292"])
        with pytest.raises(_Captured):
            async for _ in gufo.subscribe("s", **kwargs):
                pass  # pragma: no cover
        with pytest.raises(_Captured):
            async for _ in lb.subscribe("s", **_lb_kwargs(kwargs)):
                pass  # pragma: no cover
        self._same(gufo_sent, lbwire_sent)

    @pytest.mark.anyio
    async def test_subscribe_resume(
        self, gufo_sent: List[Tuple[str, Any]], lbwire_sent: List[Tuple[str, Any]]
    ) -> None:
        """RESUME reads the cursor, then starts at the stored value (5 here)."""
        lb = lb_client.LiftbridgeClient(["127.0.0.1:9292"])
        with pytest.raises(_Captured):
            async for _ in lb.subscribe(
                "s", partition=1, start_position=lb_types.StartPosition.RESUME, cursor_id="c"
            ):
                pass  # pragma: no cover
        (fetch, request), (subscribe, sub) = lbwire_sent
        assert (fetch, request.stream, request.partition, request.cursorId) == (
            "FetchCursor",
            "s",
            1,
            "c",
        )
        assert (subscribe, sub.startPosition, sub.startOffset) == (
            "Subscribe",
            lb_types.StartPosition.OFFSET,
            5,
        )
        # gufo reads the cursor inside its (replaced) _subscribe: only the
        # request shape before that is comparable.
        gufo = gufo_client.LiftbridgeClient(["127.0.0.1:9292"])
        with pytest.raises(_Captured):
            async for _ in gufo.subscribe(
                "s", partition=1, start_position=gufo_types.StartPosition.RESUME, cursor_id="c"
            ):
                pass  # pragma: no cover
        assert gufo_sent[0][1].startPosition == gufo_types.StartPosition.OFFSET
        for client, position in (
            (gufo, gufo_types.StartPosition.RESUME),
            (lb, lb_types.StartPosition.RESUME),
        ):
            with pytest.raises(ValueError, match="cursor_id"):
                async for _ in client.subscribe("s", start_position=position):
                    pass  # pragma: no cover
