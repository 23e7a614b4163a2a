"""`lbwire`'s TLS options, against a real server requiring client certificates and authorization."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lbwire.testing import LiftbridgeServer, TLSFiles

pytestmark = pytest.mark.one_interpreter

trustme = pytest.importorskip("trustme")

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
# The client "cli" may read metadata and create streams named ok-*, nothing else.
AUTHZ_POLICY = """\
p, cli, *, FetchMetadata
p, cli, ok-*, CreateStream
"""


class Files:
    def __init__(self, directory: Path) -> None:
        server_ca, client_ca = trustme.CA(), trustme.CA()
        server = server_ca.issue_cert("127.0.0.1", "liftbridge.test", common_name="liftbridge.test")
        client = client_ca.issue_cert("cli.test", common_name="cli")
        self.ca = directory / "ca.pem"
        self.server_cert = directory / "server.pem"
        self.server_key = directory / "server.key"
        self.client_ca = directory / "client-ca.pem"
        self.cert = directory / "client.pem"
        self.key = directory / "client.key"
        server_ca.cert_pem.write_to_path(str(self.ca))
        server.cert_chain_pems[0].write_to_path(str(self.server_cert))
        server.private_key_pem.write_to_path(str(self.server_key))
        client_ca.cert_pem.write_to_path(str(self.client_ca))
        client.cert_chain_pems[0].write_to_path(str(self.cert))
        client.private_key_pem.write_to_path(str(self.key))
        (directory / "model.conf").write_text(AUTHZ_MODEL)
        (directory / "policy.csv").write_text(AUTHZ_POLICY)
        self.authz = {
            "tls.client.authz.enabled": True,
            "tls.client.authz.model": str(directory / "model.conf"),
            "tls.client.authz.policy": str(directory / "policy.csv"),
        }


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    return Files(tmp_path_factory.mktemp("cli-tls"))


@pytest.fixture(scope="module")
def authz_server(files: Files) -> Iterator[LiftbridgeServer]:
    tls = TLSFiles(files.server_cert, files.server_key, client_ca=files.client_ca)
    with LiftbridgeServer(tls=tls, config_overrides=files.authz) as server:
        yield server


@pytest.fixture
def run_tls(files: Files, authz_server: LiftbridgeServer, lbwire_popen):
    def run(*args: str, tls: bool = True) -> subprocess.CompletedProcess[bytes]:
        options = ["--ca", str(files.ca), "--cert", str(files.cert), "--tls-key", str(files.key)]
        process = lbwire_popen(
            *args, *(options if tls else []), "--timeout", "3", brokers=authz_server.broker
        )
        out, err = process.communicate(timeout=60)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    return run


def test_mtls_options_connect(run_tls):
    done = run_tls("stream", "create", "ok-tls")
    assert done.returncode == 0, done.stderr
    listed = run_tls("stream", "list")
    assert listed.returncode == 0, listed.stderr
    assert "ok-tls" in listed.stdout.decode().split()


def test_permission_denied_exits_5(run_tls):
    done = run_tls("stream", "create", "forbidden")
    assert done.returncode == 5
    assert done.stderr.decode().startswith("lbwire: error: ")
    assert "not authorized" in done.stderr.decode()
    assert done.stderr.count(b"\n") == 1


def test_plaintext_to_a_tls_server_is_unreachable(run_tls):
    done = run_tls("metadata", tls=False)
    assert done.returncode == 3
    assert done.stderr.decode().startswith("lbwire: error: cannot reach Liftbridge")


def test_unreadable_tls_files_are_bad_arguments(lbwire, tmp_path):
    done = lbwire("metadata", "--ca", str(tmp_path / "missing.pem"), check=False)
    assert done.returncode == 2
    assert "missing.pem" in done.stderr.decode()
    done = lbwire("metadata", "--tls-key", str(tmp_path / "k.pem"), check=False)
    assert done.returncode == 2
    assert "--tls-key needs --cert" in done.stderr.decode()
