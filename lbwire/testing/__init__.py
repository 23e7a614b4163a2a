"""Throwaway real Liftbridge servers for tests.

``LiftbridgeServer`` runs one Liftbridge node (with NATS embedded in the same
process) on 127.0.0.1 with free ports and a temporary data directory;
``LiftbridgeCluster`` runs several such nodes whose embedded NATS servers form a
NATS cluster, for failover tests. Both are sync and async context managers::

    with LiftbridgeServer() as server:
        client = LiftbridgeClient([server.broker])

    async with LiftbridgeCluster(size=3) as cluster:
        client = LiftbridgeClient(cluster.brokers)

Two server generations: the pinned release v1.9.0 (the default) and
``"newest"``, Liftbridge's main branch built from a source tarball. Pick one
with ``version=`` or the environment variable ``LBWIRE_SERVER``.
``find_liftbridge()`` locates the server binary (``LIFTBRIDGE_BIN``, ``PATH``,
then lbwire's cache) and builds it with Go when it is missing.
``python -m lbwire.testing --install [--server newest]`` does the same and
prints the path.

Environment variables:

- ``LIFTBRIDGE_BIN``: the server binary to run.
- ``LBWIRE_SERVER``: ``v1.9.0`` or ``newest``.
- ``LBWIRE_LIFTBRIDGE_SOURCE``: the newest server's source tarball (default:
  ``../shared/liftbridge/`` beside the lbwire checkout).
- ``LBWIRE_CACHE_DIR``: where built binaries are cached (``~/.cache/lbwire``).
- ``LBWIRE_TESTING_DIR``: where servers keep their data, config and log (the
  system's temporary directory if unset).
- ``LBWIRE_NO_SERVER`` (test-facing): when set, starting a server lbwire has
  to find fails with its value as the reason.

Nothing here listens on or contacts any address but 127.0.0.1: embedded NATS
gets an explicit loopback ``listen`` (it would bind 0.0.0.0:4222 otherwise), and
builds newer than v1.9.0 always get telemetry switched off in their config.
"""

from __future__ import annotations

from lbwire.testing._build import (
    LIFTBRIDGE_MODULE,
    LIFTBRIDGE_VERSION,
    NEWEST,
    NEWEST_COMMIT,
    NEWEST_TARBALL,
    SERVER_ENV,
    SERVER_VERSIONS,
    SOURCE_ENV,
    LiftbridgeBuildError,
    LiftbridgeNotFound,
    binary_version,
    cache_dir,
    cached_binary,
    find_liftbridge,
    needs_telemetry_key,
    newest_source,
    selected_version,
    server_generation,
)
from lbwire.testing._cluster import LiftbridgeCluster
from lbwire.testing._config import TLSFiles, liftbridge_config
from lbwire.testing._process import LiftbridgeStartError
from lbwire.testing._server import (
    DEFAULT_START_TIMEOUT,
    DEFAULT_STOP_TIMEOUT,
    NO_SERVER_ENV,
    LiftbridgeServer,
    ReadyCheck,
)

__all__ = [
    "DEFAULT_START_TIMEOUT",
    "DEFAULT_STOP_TIMEOUT",
    "LIFTBRIDGE_MODULE",
    "LIFTBRIDGE_VERSION",
    "NEWEST",
    "NEWEST_COMMIT",
    "NEWEST_TARBALL",
    "NO_SERVER_ENV",
    "SERVER_ENV",
    "SERVER_VERSIONS",
    "SOURCE_ENV",
    "LiftbridgeBuildError",
    "LiftbridgeCluster",
    "LiftbridgeNotFound",
    "LiftbridgeServer",
    "LiftbridgeStartError",
    "ReadyCheck",
    "TLSFiles",
    "binary_version",
    "cache_dir",
    "cached_binary",
    "find_liftbridge",
    "liftbridge_config",
    "main",
    "needs_telemetry_key",
    "newest_source",
    "selected_version",
    "server_generation",
]


def __getattr__(name: str) -> object:
    # `main` lives in __main__.py; imported on use so that `python -m
    # lbwire.testing` does not find the module already imported.
    if name == "main":
        from lbwire.testing.__main__ import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
