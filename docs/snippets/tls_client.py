"""Connect over TLS, with a client certificate for mutual TLS."""

import asyncio
import os
import ssl

from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorPermissionDenied

BROKERS = os.environ.get("LIFTBRIDGE_BROKERS", "127.0.0.1:9292").split(",")
CA_FILE = os.environ["LIFTBRIDGE_CA"]  # the CA that signed the server's certificate
CERT_FILE = os.environ.get("LIFTBRIDGE_CERT")  # client certificate (PEM), for mutual TLS
KEY_FILE = os.environ.get("LIFTBRIDGE_KEY")  # its private key
SERVER_NAME = os.environ.get("LIFTBRIDGE_TLS_NAME")  # when the certificate names another host


def tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=CA_FILE)
    if CERT_FILE:
        context.load_cert_chain(CERT_FILE, KEY_FILE)
    return context


async def main() -> None:
    async with LiftbridgeClient(
        BROKERS, ssl_context=tls_context(), tls_server_hostname=SERVER_NAME
    ) as client:
        try:
            metadata = await client.get_metadata()
        except ErrorPermissionDenied as exc:
            # A refused certificate (or an unauthorized identity) fails at once:
            # retrying cannot mend a configuration error.
            print(f"refused: {exc}")
            raise SystemExit(1) from None
        for broker in metadata.brokers:
            print(f"broker {broker.id} at {broker.address} (TLS)")


if __name__ == "__main__":
    asyncio.run(main())
