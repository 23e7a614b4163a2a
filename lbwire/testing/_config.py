"""The configuration files a throwaway Liftbridge node runs with."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from lbwire.testing._build import needs_telemetry_key

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class TLSFiles:
    """TLS material for the server's gRPC listener (PEM file paths).

    With ``client_ca`` set, the server requires client certificates signed by
    it (``tls.client.auth.enabled``).
    """

    cert: Union[str, os.PathLike[str]]
    key: Union[str, os.PathLike[str]]
    client_ca: Optional[Union[str, os.PathLike[str]]] = None


def _nest(settings: Mapping[str, Any], into: dict[str, Any]) -> None:
    """Merge ``settings`` (dotted or nested keys) into the nested dict ``into``.

    A value of None removes the key.
    """
    for dotted, value in settings.items():
        *parents, leaf = dotted.split(".")
        table = into
        for part in parents:
            child = table.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"config key {dotted!r} is below a non-table value")
            table = child
        if isinstance(value, Mapping):
            child = table.setdefault(leaf, {})
            if not isinstance(child, dict):
                table[leaf] = child = {}
            _nest(value, child)
        elif value is None:
            table.pop(leaf, None)
        else:
            table[leaf] = value


def liftbridge_config(
    *,
    version: str,
    port: int,
    nats_port: int,
    nats_config: Path,
    data_dir: Path,
    log_level: str = "info",
    cursors_partitions: int = 1,
    tls: Optional[TLSFiles] = None,
    server_id: Optional[str] = None,
    bootstrap_peers: Optional[Sequence[str]] = None,
    overrides: Optional[Mapping[str, Any]] = None,
) -> dict[str, Any]:
    """Build the (nested) Liftbridge configuration of one node.

    ``version`` is what the binary reports (:func:`binary_version`): builds
    newer than v1.9.0 get ``telemetry.enabled: false``, which ``overrides``
    cannot take away; v1.9.0 gets no ``telemetry`` key (it rejects unknown
    keys). ``overrides`` is merged last (dotted or nested keys; None removes).
    Test-facing: :class:`LiftbridgeServer` writes this as its config file.
    """
    flat: dict[str, Any] = {
        "listen": f"{LOOPBACK}:{port}",
        # `host` and `port` are what the broker advertises in metadata; with
        # only `listen`, v1.9.0 advertises port 9292 whatever it listens on.
        "host": LOOPBACK,
        "port": port,
        "data.dir": str(data_dir),
        "logging.level": log_level,
        "nats.embedded.config": str(nats_config),
        "nats.servers": [f"nats://{LOOPBACK}:{nats_port}"],
        "cursors.stream.partitions": cursors_partitions,
        "cursors.stream.auto.pause.time": 0,
    }
    if bootstrap_peers:
        # Every member bootstraps with the same full configuration: no start
        # order, no join retries (a non-seed node gives up joining after 30 s).
        flat["clustering.raft.bootstrap.peers"] = list(bootstrap_peers)
        # Raft lines ("pipelining replication: peer=...") show who has joined.
        flat["logging.raft"] = True
    else:
        flat["clustering.raft.bootstrap.seed"] = True
    if server_id is not None:
        flat["clustering.server.id"] = server_id
    if tls is not None:
        flat["tls.cert"] = os.fspath(tls.cert)
        flat["tls.key"] = os.fspath(tls.key)
        if tls.client_ca is not None:
            flat["tls.client.auth.enabled"] = True
            flat["tls.client.auth.ca"] = os.fspath(tls.client_ca)
    config: dict[str, Any] = {}
    _nest(flat, config)
    if overrides:
        _nest(overrides, config)
    if needs_telemetry_key(version):
        # Applied after the overrides: these servers must never phone home.
        telemetry = config.get("telemetry")
        if not isinstance(telemetry, dict):
            config["telemetry"] = telemetry = {}
        telemetry["enabled"] = False
    return config


def nats_config(port: int, cluster_port: Optional[int], routes: Sequence[int]) -> str:
    """Return the embedded NATS server's configuration (loopback only)."""
    lines = [f"listen: {LOOPBACK}:{port}"]
    if cluster_port is not None:
        route_urls = ", ".join(f'"nats-route://{LOOPBACK}:{p}"' for p in routes)
        lines.append(
            f"cluster {{\n  name: lbwire\n  listen: {LOOPBACK}:{cluster_port}\n"
            f"  routes: [{route_urls}]\n}}"
        )
    return "\n".join(lines) + "\n"
