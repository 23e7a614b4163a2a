"""Certificates for the TLS tests (imported as ``tls_support``).

One ``PKI`` per session, made with trustme: a CA for servers, another for
clients (so a test can tell "the client does not trust the server" from "the
server does not trust the client"), and the leaf certificates and PEM files
the servers need.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import trustme

#: The host names and addresses the server certificate is valid for.
SERVER_NAMES = ("localhost", "liftbridge.test", "127.0.0.1", "::1")
#: The common name (Liftbridge's client identity) of the trusted client certificate.
CLIENT_NAME = "lbwire-client"


@dataclass(frozen=True)
class PKI:
    server_ca: trustme.CA
    client_ca: trustme.CA
    server: trustme.LeafCert
    client: trustme.LeafCert
    directory: Path

    @property
    def server_cert_file(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key_file(self) -> Path:
        return self.directory / "server.key"

    @property
    def client_ca_file(self) -> Path:
        return self.directory / "client-ca.pem"

    def client_cert(self, common_name: str) -> trustme.LeafCert:
        """Another client certificate signed by the client CA."""
        return self.client_ca.issue_cert(f"{common_name}.test", common_name=common_name)

    def context(
        self,
        *,
        trust: Optional[trustme.CA] = None,
        cert: Optional[trustme.LeafCert] = None,
    ) -> ssl.SSLContext:
        """A client context trusting ``trust`` (the server CA by default), with
        ``cert`` as client certificate if given."""
        context = ssl.create_default_context()
        (trust or self.server_ca).configure_trust(context)
        if cert is not None:
            cert.configure_cert(context)
        return context


def make_pki(directory: Path) -> PKI:
    server_ca = trustme.CA()
    client_ca = trustme.CA()
    server = server_ca.issue_cert(*SERVER_NAMES, common_name="liftbridge.test")
    client = client_ca.issue_cert(f"{CLIENT_NAME}.test", common_name=CLIENT_NAME)
    server.cert_chain_pems[0].write_to_path(str(directory / "server.pem"))
    server.private_key_pem.write_to_path(str(directory / "server.key"))
    client_ca.cert_pem.write_to_path(str(directory / "client-ca.pem"))
    return PKI(server_ca, client_ca, server, client, directory)


def ipv6_loopback_missing() -> Optional[str]:
    """Why [::1] cannot be used here, or None if it can."""
    if not socket.has_ipv6:
        return "Python was built without IPv6 support"
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError as exc:
        return f"cannot bind [::1]: {exc}"
    return None
