"""Connect through an HTTP proxy: an explicit URL, or the one the environment names."""

import asyncio
import os

from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorPermissionDenied

BROKERS = os.environ.get("LIFTBRIDGE_BROKERS", "127.0.0.1:9292").split(",")
# http://[user:password@]host:port; unset: the environment's proxy, if any.
PROXY = os.environ.get("LIFTBRIDGE_PROXY")


async def main() -> None:
    # proxy= wins; without it, enable_http_proxy=True reads grpc_proxy,
    # https_proxy, http_proxy and no_grpc_proxy, no_proxy as grpcio does.
    async with LiftbridgeClient(BROKERS, proxy=PROXY, enable_http_proxy=True) as client:
        try:
            metadata = await client.get_metadata()
        except ErrorPermissionDenied as exc:
            # The proxy refused the credentials (407) or the broker (403):
            # retrying cannot mend that, so it fails at once.
            print(f"refused: {exc}")
            raise SystemExit(1) from None
        proxy = client.channel_config.proxy  # shown without its credentials
        print(f"{len(metadata.brokers)} broker(s), through {proxy or 'no proxy'}")


if __name__ == "__main__":
    asyncio.run(main())
