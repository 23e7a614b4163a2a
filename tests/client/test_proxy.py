"""The client through a real HTTP proxy (tinyproxy on loopback) to a real Liftbridge server.

Each test starts its own tinyproxy (tests/helpers/tinyproxy.py), configured
for the case: open to every port, asking for credentials, or allowing only
port 443. The proxy's log tells which connections went through it.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_support import read_all
from helpers.tinyproxy import Tinyproxy, tinyproxy

from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorPermissionDenied, ErrorUnavailable, LiftbridgeError
from lbwire.grpc.proxy import NO_PROXY_VARIABLES, PROXY_VARIABLES
from lbwire.retry import RetryPolicy

pytestmark = pytest.mark.anyio

PASSWORD = "pr0xy-s3cret"
#: Fails fast: three tries within a second.
QUICK_RETRIES = RetryPolicy(attempts=3, initial_backoff=0.01, max_backoff=0.05, max_time=1.0)


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests set the proxy variables they use, and only those."""
    for name in (*PROXY_VARIABLES, *NO_PROXY_VARIABLES):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def open_proxy(tmp_path: Path) -> Iterator[Tinyproxy]:
    """A proxy that opens tunnels to any port, without credentials."""
    with tinyproxy(tmp_path) as proxy:
        yield proxy


@pytest.fixture
def auth_proxy(tmp_path: Path) -> Iterator[Tinyproxy]:
    """A proxy that wants the user "lbwire" with PASSWORD."""
    with tinyproxy(tmp_path, credentials=("lbwire", PASSWORD)) as proxy:
        yield proxy


@pytest.fixture
def port_443_proxy(tmp_path: Path) -> Iterator[Tinyproxy]:
    """A proxy with tinyproxy's packaged rule: tunnels to port 443 only."""
    with tinyproxy(tmp_path, connect_ports=(443,)) as proxy:
        yield proxy


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections (bound, not listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def round_trip(client: LiftbridgeClient, stream: str) -> None:
    """Create a stream, publish to it and read it back, all through the client."""
    await client.create_stream(stream, wait_for_stream=True)
    await client.publish(b"one", stream=stream)
    pending = await client.publish_async(b"two", stream=stream)
    assert (await pending).offset == 1
    assert [m.value for m in await read_all(client, stream)] == [b"one", b"two"]


async def first_call_error(client: LiftbridgeClient, expected: type[LiftbridgeError]) -> str:
    """The text of the `expected` error the client's first call raises."""
    async with client:
        with pytest.raises(expected) as caught:
            await client.get_metadata()
    return str(caught.value)


async def test_plaintext_publish_and_subscribe_through_the_tunnel(
    open_proxy: Tinyproxy, broker: str, stream_name: str
) -> None:
    async with LiftbridgeClient([broker], proxy=open_proxy.url) as client:
        await round_trip(client, stream_name)
        assert client.channel_config.proxy is not None
    # Every connection went through the proxy: the calls' and the subscription's.
    tunnels = open_proxy.connect_requests()
    assert len(tunnels) >= 2
    assert set(tunnels) == {broker}


async def test_credentials_are_accepted_and_never_logged(
    auth_proxy: Tinyproxy, broker: str, stream_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="lbwire"):
        async with LiftbridgeClient([broker], proxy=auth_proxy.url) as client:
            await round_trip(client, stream_name)
            assert PASSWORD not in repr(client.channel_config)
    assert auth_proxy.connect_requests()
    assert PASSWORD not in caplog.text


async def test_missing_credentials_raise_permission_denied_at_once(
    auth_proxy: Tinyproxy, broker: str
) -> None:
    no_credentials = f"http://127.0.0.1:{auth_proxy.port}"
    message = await first_call_error(
        LiftbridgeClient([broker], proxy=no_credentials), ErrorPermissionDenied
    )
    assert f"through the HTTP proxy {no_credentials}" in message
    assert "407 Proxy Authentication Required" in message
    assert "wants credentials" in message
    # Not retried: the default policy would try 10 times.
    assert len(auth_proxy.connect_requests()) == 1


async def test_wrong_credentials_raise_without_the_password(
    auth_proxy: Tinyproxy, broker: str, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "not-" + PASSWORD
    client = LiftbridgeClient([broker], proxy=auth_proxy.url_with("lbwire", wrong))
    with caplog.at_level(logging.DEBUG, logger="lbwire"):
        async with client:
            with pytest.raises(ErrorPermissionDenied) as caught:
                await client.get_metadata()
    message = str(caught.value)
    # tinyproxy 1.11 answers wrong credentials with 401, missing ones with 407.
    assert "401 Unauthorized" in message or "407" in message
    assert "did not accept the credentials" in message
    assert f"http://127.0.0.1:{auth_proxy.port}" in message
    error = caught.value
    shown = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    shown += repr(error)
    shown += caplog.text + repr(client.channel_config)
    assert wrong not in shown
    assert len(auth_proxy.connect_requests()) == 1


async def test_a_proxy_refusing_the_port_raises_permission_denied(
    port_443_proxy: Tinyproxy, broker: str
) -> None:
    message = await first_call_error(
        LiftbridgeClient([broker], proxy=port_443_proxy.url), ErrorPermissionDenied
    )
    assert f"through the HTTP proxy {port_443_proxy.url}" in message
    assert f"the proxy refused CONNECT {broker}: HTTP/1.1 403 Access violation" in message
    assert len(port_443_proxy.connect_requests()) == 1


async def test_a_proxy_that_cannot_reach_the_broker_is_unavailable(
    open_proxy: Tinyproxy, refusing_port: int
) -> None:
    client = LiftbridgeClient(
        [f"127.0.0.1:{refusing_port}"], proxy=open_proxy.url, retry_policy=QUICK_RETRIES
    )
    message = await first_call_error(client, ErrorUnavailable)
    # tinyproxy: "500 Unable to connect"; the error is transient, so retried.
    assert f"the proxy refused CONNECT 127.0.0.1:{refusing_port}: HTTP/1.1 500" in message
    assert len(open_proxy.connect_requests()) > 1


async def test_a_proxy_not_listening_is_unavailable(refusing_port: int, broker: str) -> None:
    dead_proxy = f"http://127.0.0.1:{refusing_port}"
    client = LiftbridgeClient([broker], proxy=dead_proxy, retry_policy=QUICK_RETRIES)
    message = await first_call_error(client, ErrorUnavailable)
    assert f"through the HTTP proxy {dead_proxy}: cannot connect to the proxy" in message


async def test_environment_proxy_with_enable_http_proxy(
    open_proxy: Tinyproxy, broker: str, stream_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", open_proxy.url)
    async with LiftbridgeClient([broker], enable_http_proxy=True) as client:
        await round_trip(client, stream_name)
    assert set(open_proxy.connect_requests()) == {broker}


async def test_grpc_proxy_wins_over_https_proxy_and_http_proxy(
    open_proxy: Tinyproxy,
    refusing_port: int,
    broker: str,
    stream_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dead_proxy = f"http://127.0.0.1:{refusing_port}"
    monkeypatch.setenv("grpc_proxy", open_proxy.url)
    monkeypatch.setenv("https_proxy", dead_proxy)
    monkeypatch.setenv("http_proxy", dead_proxy)
    async with LiftbridgeClient([broker], enable_http_proxy=True) as client:
        await round_trip(client, stream_name)
    assert open_proxy.connect_requests()
    # An explicit proxy wins over the environment.
    monkeypatch.setenv("grpc_proxy", dead_proxy)
    async with LiftbridgeClient([broker], enable_http_proxy=True, proxy=open_proxy.url) as client:
        assert await client.get_metadata()


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "localhost, 127.0.0.0/8", "*"])
async def test_no_proxy_hosts_are_reached_directly(
    open_proxy: Tinyproxy,
    broker: str,
    stream_name: str,
    monkeypatch: pytest.MonkeyPatch,
    no_proxy: str,
) -> None:
    monkeypatch.setenv("https_proxy", open_proxy.url)
    monkeypatch.setenv("no_proxy", no_proxy)
    async with LiftbridgeClient([broker], enable_http_proxy=True) as client:
        await round_trip(client, stream_name)
    assert open_proxy.connect_requests() == []
    # no_grpc_proxy wins over no_proxy: an empty one exempts nothing.
    monkeypatch.setenv("no_grpc_proxy", "")
    async with LiftbridgeClient([broker], enable_http_proxy=True) as client:
        assert await client.get_metadata()
    assert open_proxy.connect_requests() == [broker]


async def test_nothing_goes_through_the_proxy_when_it_is_off(
    open_proxy: Tinyproxy, broker: str, stream_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, open_proxy.url)
    async with LiftbridgeClient([broker]) as client:  # enable_http_proxy=False, as gufo's default
        await round_trip(client, stream_name)
        assert client.channel_config.proxy is None
    async with LiftbridgeClient([broker], enable_http_proxy=False) as client:
        assert await client.get_metadata()
    assert open_proxy.connect_requests() == []


async def test_calls_outside_the_block_go_through_the_proxy(
    open_proxy: Tinyproxy, broker: str, stream_name: str
) -> None:
    client = LiftbridgeClient([broker], proxy=open_proxy.url)
    await client.create_stream(stream_name, wait_for_stream=True)
    assert await client.publish(b"outside", stream=stream_name) is not None
    assert [m.value for m in await read_all(client, stream_name)] == [b"outside"]
    assert set(open_proxy.connect_requests()) == {broker}


def test_the_cookbook_snippet(auth_proxy: Tinyproxy, broker: str) -> None:
    """docs/snippets/proxy_client.py, run as a reader would run it."""
    snippet = Path(__file__).resolve().parents[2] / "docs" / "snippets" / "proxy_client.py"
    env = {**os.environ, "LIFTBRIDGE_BROKERS": broker}
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(snippet.parents[2]), env.get("PYTHONPATH")])
    )

    def run(proxy: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(snippet)],
            env={**env, "LIFTBRIDGE_PROXY": proxy},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    worked = run(auth_proxy.url)
    assert worked.returncode == 0, worked.stderr
    assert worked.stdout == f"1 broker(s), through http://127.0.0.1:{auth_proxy.port}\n"
    refused = run(auth_proxy.url_with("lbwire", "wrong"))
    assert refused.returncode == 1, refused.stderr
    assert refused.stdout.startswith("refused: ")
    assert "wrong" not in refused.stdout + refused.stderr
