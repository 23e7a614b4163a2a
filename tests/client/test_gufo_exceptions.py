"""lbwire raises what gufo-liftbridge 0.2.0 raises where a gufo program would catch it.

Where lbwire's class is finer, it derives from gufo's too, so both `except`
clauses work: a wrong type is a `TypeError` (gufo's protobuf raises it) and
still a `ValueError` (lbwire's earlier contract); a negative partition is an
`ErrorNotFound` (the server's answer to gufo) and still a `ValueError`; an
unresolvable host name is an `ErrorNotFound` (gufo's "Cannot resolve any
seeds") and still an `ErrorUnavailable`.
"""

from __future__ import annotations

import socket
from typing import Any

import anyio
import pytest
from client_support import collect, read_all
from helpers import HANG_GUARD

from lbwire.client import LiftbridgeClient
from lbwire.error import (
    ErrorInvalidArgument,
    ErrorNotFound,
    ErrorUnavailable,
    LiftbridgeError,
)
from lbwire.retry import RetryPolicy
from lbwire.types import AckPolicy, StartPosition

gufo_client = pytest.importorskip("gufo.liftbridge.client")
gufo_error = pytest.importorskip("gufo.liftbridge.error")

# ----------------------------------------------------------------- wrong types


@pytest.mark.parametrize(
    "kwargs",
    [
        {"value": "text"},
        {"value": b"x", "headers": {"h": "text"}},
        {"value": b"x", "headers": {"h": 1}},
        {"value": b"x", "key": "text"},
    ],
    ids=["str-value", "str-header", "int-header", "str-key"],
)
def test_wrong_types_raise_type_error_as_gufo(kwargs: dict[str, Any]) -> None:
    value = kwargs.pop("value")
    with pytest.raises(TypeError):
        gufo_client.LiftbridgeClient(["127.0.0.1:1"]).get_publish_request(
            value, stream="s", **kwargs
        )
    with pytest.raises(TypeError) as info:
        LiftbridgeClient(["127.0.0.1:1"]).get_publish_request(value, stream="s", **kwargs)
    assert isinstance(info.value, ValueError)  # lbwire's earlier contract
    assert isinstance(info.value, ErrorInvalidArgument)


@pytest.mark.anyio
async def test_publish_of_a_str_value_raises_type_error(
    client: LiftbridgeClient, stream: str
) -> None:
    with pytest.raises(TypeError):
        await client.publish("text", stream=stream)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await client.publish(b"x", stream=stream, headers={"h": "text"})  # type: ignore[dict-item]


# ----------------------------------------------------------------- value=None


def test_none_value_builds_an_empty_message_as_gufo() -> None:
    gufo_request = gufo_client.LiftbridgeClient(["127.0.0.1:1"]).get_publish_request(
        None, stream="s"
    )
    assert gufo_request.value == b""
    request = LiftbridgeClient(["127.0.0.1:1"]).get_publish_request(None, stream="s")  # type: ignore[arg-type]
    assert request.value == b""


@pytest.mark.anyio
async def test_publish_of_none_stores_an_empty_message(
    client: LiftbridgeClient, stream: str
) -> None:
    # AckPolicy.ALL: acked once committed, so a reader sees it.
    ack = await client.publish(None, stream=stream, ack_policy=AckPolicy.ALL)  # type: ignore[arg-type]
    assert ack is not None
    pending = await client.publish_async(None, stream=stream, ack_policy=AckPolicy.ALL)  # type: ignore[arg-type]
    assert await pending is not None
    messages = await read_all(client, stream)
    assert [m.value for m in messages] == [b"", b""]


# ----------------------------------------------------------------- partition=-1


@pytest.mark.anyio
async def test_publish_to_partition_minus_one_raises_not_found(
    client: LiftbridgeClient, stream: str
) -> None:
    for publish in (client.publish, client.publish_async):
        with pytest.raises(ErrorNotFound) as info:
            await publish(b"x", stream=stream, partition=-1)
        assert isinstance(info.value, ValueError)  # lbwire's earlier contract
    with pytest.raises(ErrorNotFound):
        client.get_publish_request(b"x", stream=stream, partition=-1)
    assert await read_all(client, stream) == []


def test_gufo_publish_to_partition_minus_one_raises_not_found(
    liftbridge_server: Any, stream_name: str
) -> None:
    """What the test above matches: gufo against the real server (asyncio only)."""
    import asyncio

    async def main() -> None:
        async with gufo_client.LiftbridgeClient([liftbridge_server.broker]) as client:
            await client.create_stream(stream_name, wait_for_stream=True)
            with pytest.raises(gufo_error.ErrorNotFound):
                await client.publish(b"x", stream=stream_name, partition=-1)

    asyncio.run(asyncio.wait_for(main(), HANG_GUARD))


# ----------------------------------------------------------------- unresolvable host

# A host name that does not resolve. Resolving a real one would ask the
# machine's DNS server, which is not on loopback, so the stdlib resolver is
# wrapped: names under `.invalid` fail as glibc reports an unknown name, the
# rest resolve as usual. Both asyncio and trio resolve through it.
UNRESOLVABLE = "no-such-broker.invalid"


@pytest.fixture
def unresolvable_host(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    real = socket.getaddrinfo
    asked: list[str] = []

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name.endswith(".invalid"):
            asked.append(name)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


async def _subscribe_once(client: LiftbridgeClient) -> None:
    await collect(client.subscribe("s", start_position=StartPosition.EARLIEST), limit=1)


CALLS = {
    "get_metadata": lambda c: c.get_metadata(),
    "create_stream": lambda c: c.create_stream("s"),
    "publish": lambda c: c.publish(b"x", stream="s"),
    "set_cursor": lambda c: c.set_cursor("s", 0, "c", 1),
    "subscribe": _subscribe_once,
}


@pytest.mark.anyio
@pytest.mark.parametrize("call", list(CALLS))
async def test_unresolvable_host_raises_not_found_at_once(
    unresolvable_host: list[str], call: str
) -> None:
    async with LiftbridgeClient([f"{UNRESOLVABLE}:9292"]) as client:
        started = anyio.current_time()
        with pytest.raises(ErrorNotFound) as info:
            await CALLS[call](client)
        elapsed = anyio.current_time() - started
    assert isinstance(info.value, ErrorUnavailable)  # lbwire's earlier contract
    assert UNRESOLVABLE in str(info.value)
    assert unresolvable_host  # the wrapped resolver was asked
    # "At once": the retry policy (30 s) is not spent on a name that cannot resolve.
    assert elapsed < RETRY_BOUND, elapsed


#: Far below the default retry policy's 30 s, far above one failed lookup.
RETRY_BOUND = 3.0


@pytest.mark.anyio
async def test_unresolvable_seed_is_skipped_when_another_answers(
    unresolvable_host: list[str], broker: str
) -> None:
    async with LiftbridgeClient([f"{UNRESOLVABLE}:9292", broker]) as client:
        metadata = await client.get_metadata()
    assert metadata.brokers


@pytest.mark.anyio
async def test_unresolvable_seed_does_not_stop_retries_while_another_is_down(
    unresolvable_host: list[str],
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        down = f"127.0.0.1:{sock.getsockname()[1]}"
    policy = RetryPolicy(max_time=1.0)
    async with LiftbridgeClient([f"{UNRESOLVABLE}:9292", down], retry_policy=policy) as client:
        with pytest.raises(ErrorUnavailable) as info:
            await client.get_metadata()
    # The broker that is down may come back: that is worth the retry policy.
    assert not isinstance(info.value, ErrorNotFound)
    assert len(unresolvable_host) > 1  # tried again


def test_gufo_raises_not_found_for_an_unresolvable_host(unresolvable_host: list[str]) -> None:
    """What the tests above match: gufo with the same resolver (asyncio only)."""
    import asyncio

    async def main() -> None:
        async with gufo_client.LiftbridgeClient([f"{UNRESOLVABLE}:9292"]) as client:
            with pytest.raises(gufo_error.ErrorNotFound):
                await client.get_metadata()

    asyncio.run(asyncio.wait_for(main(), HANG_GUARD))


def test_finer_classes_are_liftbridge_errors() -> None:
    from lbwire.error import ErrorHostNotFound, ErrorInvalidPartition, ErrorInvalidType

    for cls in (ErrorHostNotFound, ErrorInvalidPartition, ErrorInvalidType):
        assert issubclass(cls, LiftbridgeError)
        assert not cls.transient
