"""LiftbridgeClient over TLS, mutual TLS and authorization against a real server.

Liftbridge v1.9.0 (Go's crypto/tls) sends a TLS alert when it refuses a
client certificate, so lbwire can say exactly why a connection failed.
Authorization (casbin) identifies a client by its certificate's common name
and answers a refused call with Unknown "The client is not authorized to call
<method> on resource <stream>".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import anyio
import pytest
import trustme
from tls_support import CLIENT_NAME, PKI

from lbwire.client import LiftbridgeClient, StartPosition, StopPosition
from lbwire.error import (
    ErrorPermissionDenied,
    ErrorUnavailable,
    LiftbridgeError,
    PublishAsyncError,
)
from lbwire.retry import RetryPolicy
from lbwire.testing import LiftbridgeServer, TLSFiles
from lbwire.types import Message
from lbwire.wire import PublishAsyncError as WirePublishAsyncError

pytestmark = [pytest.mark.anyio, pytest.mark.server]

#: A guard against hangs, never a speed expectation.
HANG_GUARD = 30.0
#: Connection failures are not worth retrying in these tests: fail at once.
ONE_TRY = RetryPolicy(attempts=1)

# Identities are certificate common names; `keyMatch` lets "granted-*" cover
# every stream a test names "granted-<something>". FetchMetadata is always
# checked against the resource "*".
AUTHZ_MODEL = """\
[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = r.sub == p.sub && keyMatch(r.obj, p.obj) && r.act == p.act
"""
AUTHZ_POLICY = f"""\
p, {CLIENT_NAME}, *, FetchMetadata
p, {CLIENT_NAME}, granted-*, CreateStream
p, {CLIENT_NAME}, granted-*, FetchPartitionMetadata
p, {CLIENT_NAME}, granted-*, Publish
p, {CLIENT_NAME}, granted-*, Subscribe
p, {CLIENT_NAME}, granted-*, SetCursor
p, {CLIENT_NAME}, granted-*, FetchCursor
p, {CLIENT_NAME}, __cursors, Publish
p, reader, *, FetchMetadata
p, reader, granted-*, FetchPartitionMetadata
p, reader, granted-*, Subscribe
p, reader, granted-*, SetCursor
p, outsider, *, FetchMetadata
"""


def authz_settings(directory: Path, switch: Any = True) -> dict[str, Any]:
    model = directory / "authz-model.conf"
    policy = directory / "authz-policy.csv"
    model.write_text(AUTHZ_MODEL)
    policy.write_text(AUTHZ_POLICY)
    return {
        "tls.client.authz.enabled": switch,
        "tls.client.authz.model": str(model),
        "tls.client.authz.policy": str(policy),
    }


@pytest.fixture(scope="module")
def tls_server(pki: PKI) -> Iterator[LiftbridgeServer]:
    """TLS with server authentication only."""
    with LiftbridgeServer(tls=TLSFiles(pki.server_cert_file, pki.server_key_file)) as server:
        yield server


@pytest.fixture(scope="module")
def mtls_server(pki: PKI) -> Iterator[LiftbridgeServer]:
    """TLS requiring a client certificate signed by the client CA."""
    tls = TLSFiles(pki.server_cert_file, pki.server_key_file, client_ca=pki.client_ca_file)
    with LiftbridgeServer(tls=tls) as server:
        yield server


@pytest.fixture(scope="module")
def authz_server(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiftbridgeServer]:
    """Mutual TLS with casbin authorization (AUTHZ_MODEL, AUTHZ_POLICY)."""
    tls = TLSFiles(pki.server_cert_file, pki.server_key_file, client_ca=pki.client_ca_file)
    settings = authz_settings(tmp_path_factory.mktemp("authz"))
    with LiftbridgeServer(tls=tls, config_overrides=settings) as server:
        yield server


def tls_client(
    pki: PKI,
    server: LiftbridgeServer,
    *,
    cert: Optional[trustme.LeafCert] = None,
    trust: Optional[trustme.CA] = None,
    **kwargs: Any,
) -> LiftbridgeClient:
    return LiftbridgeClient(
        [server.broker], ssl_context=pki.context(trust=trust, cert=cert), **kwargs
    )


async def read_all(client: LiftbridgeClient, stream: str, **kwargs: Any) -> list[Message]:
    kwargs.setdefault("start_position", StartPosition.EARLIEST)
    with anyio.fail_after(HANG_GUARD):
        return [
            message
            async for message in client.subscribe(
                stream, stop_position=StopPosition.STOP_LATEST, **kwargs
            )
        ]


async def connect_error(
    client: LiftbridgeClient, expected: type[LiftbridgeError] = ErrorUnavailable
) -> str:
    """The message of the `expected` error the client's first call raises."""
    async with client:
        with pytest.raises(expected) as caught:
            await client.get_metadata()
    return str(caught.value)


async def certificate_error(client: LiftbridgeClient) -> str:
    """The message of the error a refused certificate raises: at once, not after retries.

    Retries are for ErrorUnavailable only; a refused certificate raises
    ErrorPermissionDenied (UNAUTHENTICATED), which no retry policy repeats.
    """
    message = await connect_error(client, ErrorPermissionDenied)
    assert client.retry_policy.attempts > 1  # the default policy, which would retry
    return message


# -- working connections ----------------------------------------------------------------------


async def test_mutual_tls_end_to_end_create_publish_subscribe_cursor(
    pki: PKI, mtls_server: LiftbridgeServer, stream_name: str
) -> None:
    async with tls_client(pki, mtls_server, cert=pki.client) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
        acks = [await client.publish(f"m{i}".encode(), stream=stream_name) for i in range(3)]
        assert [ack.offset for ack in acks if ack is not None] == [0, 1, 2]
        pending = await client.publish_async(b"m3", stream=stream_name)
        assert (await pending).offset == 3

        messages = await read_all(client, stream_name)
        assert [m.value for m in messages] == [b"m0", b"m1", b"m2", b"m3"]

        await client.wait_for_cursors()
        await client.set_cursor(stream_name, 0, "tls-cursor", 1)
        resumed = await read_all(
            client, stream_name, start_position=StartPosition.RESUME, cursor_id="tls-cursor"
        )
        assert [m.value for m in resumed] == [b"m2", b"m3"]


async def test_tls_with_server_host_name_override(
    pki: PKI, tls_server: LiftbridgeServer, stream_name: str
) -> None:
    # Brokers from metadata (127.0.0.1) are verified against the same name.
    async with tls_client(pki, tls_server, tls_server_hostname="liftbridge.test") as client:
        await client.create_stream(stream_name, wait_for_stream=True)
        await client.publish(b"over tls", stream=stream_name)
        assert [m.value for m in await read_all(client, stream_name)] == [b"over tls"]


async def test_mutual_tls_client_reconnects_after_a_server_restart(
    pki: PKI, stream_name: str
) -> None:
    tls = TLSFiles(pki.server_cert_file, pki.server_key_file, client_ca=pki.client_ca_file)
    server = LiftbridgeServer(tls=tls)
    async with server, tls_client(pki, server, cert=pki.client) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
        await client.publish(b"before", stream=stream_name)
        assert client.connection_info()[0].connected
        await server.arestart()
        # The broken connection is replaced by a new handshake, certificate
        # included. A stream made after the restart: the newest Liftbridge may
        # bring an older partition back without serving it (server behaviour,
        # tests/test_server_generations.py), which is not what this test is about.
        after = f"{stream_name}-after"
        await client.create_stream(after, wait_for_stream=True)
        await client.publish(b"after", stream=after)
        assert [m.value for m in await read_all(client, after)] == [b"after"]


# -- refused connections: the error names the cause ------------------------------------------


async def test_missing_client_certificate_is_named(pki: PKI, mtls_server: LiftbridgeServer) -> None:
    message = await certificate_error(tls_client(pki, mtls_server))
    assert "the server requires a client certificate and none was sent" in message


async def test_client_certificate_from_an_unknown_ca_is_named(
    pki: PKI, mtls_server: LiftbridgeServer
) -> None:
    stranger = trustme.CA().issue_cert("stranger.test", common_name="stranger")
    message = await certificate_error(tls_client(pki, mtls_server, cert=stranger))
    assert "the server rejected the client certificate (TLS alert: unknown ca)" in message


async def test_untrusted_server_certificate_is_named(
    pki: PKI, mtls_server: LiftbridgeServer
) -> None:
    client = tls_client(pki, mtls_server, cert=pki.client, trust=trustme.CA())
    message = await certificate_error(client)
    assert "certificate verify failed: unable to get local issuer certificate" in message
    assert mtls_server.broker in message


async def test_wrong_server_host_name_is_named(pki: PKI, tls_server: LiftbridgeServer) -> None:
    client = tls_client(pki, tls_server, tls_server_hostname="elsewhere.test")
    message = await certificate_error(client)
    assert "certificate verify failed: hostname mismatch" in message
    assert "'elsewhere.test'" in message


async def test_plaintext_client_to_a_tls_server_suggests_tls(
    tls_server: LiftbridgeServer,
) -> None:
    message = await connect_error(LiftbridgeClient([tls_server.broker], retry_policy=ONE_TRY))
    assert "a TLS server? then give an ssl_context" in message


async def test_tls_client_to_a_plaintext_server_says_it_does_not_speak_tls(
    pki: PKI, liftbridge_server: LiftbridgeServer
) -> None:
    message = await connect_error(tls_client(pki, liftbridge_server, retry_policy=ONE_TRY))
    assert "the server does not speak TLS" in message


# -- authorization --------------------------------------------------------------------------


async def test_authorized_identity_can_create_publish_subscribe_and_keep_a_cursor(
    pki: PKI, authz_server: LiftbridgeServer, stream_name: str
) -> None:
    stream = f"granted-{stream_name}"
    async with tls_client(pki, authz_server, cert=pki.client) as client:
        await client.create_stream(stream, wait_for_stream=True)
        await client.publish(b"allowed", stream=stream)
        assert [m.value for m in await read_all(client, stream)] == [b"allowed"]
        await client.wait_for_cursors()
        await client.set_cursor(stream, 0, "authz-cursor", 0)
        assert await client.get_cursor(stream, 0, "authz-cursor") == 1


async def test_create_stream_outside_the_policy_raises_permission_denied(
    pki: PKI, authz_server: LiftbridgeServer, stream_name: str
) -> None:
    stream = f"denied-{stream_name}"
    async with tls_client(pki, authz_server, cert=pki.client) as client:
        with pytest.raises(ErrorPermissionDenied) as caught:
            await client.create_stream(stream)
    assert f"not authorized to call CreateStream on resource {stream}" in str(caught.value)
    assert isinstance(caught.value, PermissionError)


async def test_publish_and_subscribe_without_permission_raise_permission_denied(
    pki: PKI, authz_server: LiftbridgeServer, stream_name: str
) -> None:
    stream = f"granted-{stream_name}"
    async with tls_client(pki, authz_server, cert=pki.client) as owner:
        await owner.create_stream(stream, wait_for_stream=True)
        # Subscribing to an empty partition fails before authorization.
        await owner.publish(b"private", stream=stream)
    outsider = pki.client_cert("outsider")
    async with tls_client(pki, authz_server, cert=outsider) as client:
        with pytest.raises(ErrorPermissionDenied, match="call Publish on resource"):
            await client.publish(b"intrusion", stream=stream)
        with pytest.raises(ErrorPermissionDenied, match="call FetchPartitionMetadata"):
            await client.get_partition_metadata(stream, 0)
        with pytest.raises(ErrorPermissionDenied, match="call Subscribe on resource"):
            await read_all(client, stream)


async def test_set_cursor_also_needs_publish_permission_on_the_cursor_stream(
    pki: PKI, authz_server: LiftbridgeServer, stream_name: str
) -> None:
    # v1.9.0 stores a cursor by publishing to __cursors as the caller and
    # reports that refusal as Internal: still a permission error to lbwire.
    stream = f"granted-{stream_name}"
    async with tls_client(pki, authz_server, cert=pki.client) as owner:
        await owner.create_stream(stream, wait_for_stream=True)
        await owner.wait_for_cursors()
    async with tls_client(pki, authz_server, cert=pki.client_cert("reader")) as reader:
        with pytest.raises(ErrorPermissionDenied, match="call Publish on resource __cursors"):
            await reader.set_cursor(stream, 0, "reader-cursor", 0)


async def test_v190_publish_async_reports_the_refusal_but_stores_the_message(
    pki: PKI, authz_server: LiftbridgeServer, stream_name: str
) -> None:
    # Liftbridge v1.9.0's PublishAsync sends PERMISSION_DENIED for the message
    # and then publishes it anyway (server/api.go publishLoop has no
    # `continue` after the refusal). lbwire reports the refusal.
    stream = f"granted-{stream_name}"
    async with tls_client(pki, authz_server, cert=pki.client) as owner:
        await owner.create_stream(stream, wait_for_stream=True)
        async with tls_client(pki, authz_server, cert=pki.client_cert("outsider")) as outsider:
            pending = await outsider.publish_async(b"refused?", stream=stream)
            with pytest.raises(PublishAsyncError, match="call Publish on resource") as caught:
                await pending
        assert caught.value.code == WirePublishAsyncError.Code.PERMISSION_DENIED
        assert isinstance(caught.value, ErrorPermissionDenied)
        # The server publishes the message after sending the refusal: wait
        # until it is stored before reading.
        with anyio.fail_after(30):
            while (await owner.get_partition_metadata(stream, 0)).newest_offset < 0:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        assert [m.value for m in await read_all(owner, stream)] == [b"refused?"]


async def test_v190_enforces_authz_whatever_value_its_switch_has(
    pki: PKI, tmp_path: Path, stream_name: str
) -> None:
    # v1.9.0 server/config.go reads `tls.client.authz.enabled` from the
    # `tls.client.auth.enabled` key: with client auth on, the mere presence of
    # the switch (even false) enables authorization.
    tls = TLSFiles(pki.server_cert_file, pki.server_key_file, client_ca=pki.client_ca_file)
    settings = authz_settings(tmp_path, switch=False)
    server = LiftbridgeServer(tls=tls, config_overrides=settings)
    async with server, tls_client(pki, server, cert=pki.client) as client:
        with pytest.raises(ErrorPermissionDenied):
            await client.create_stream(f"denied-{stream_name}")
