"""Throwaway real Liftbridge servers for tests.

``LiftbridgeServer`` runs one Liftbridge node (with NATS embedded in the same
process) on 127.0.0.1 with free ports and a temporary data directory;
``LiftbridgeCluster`` runs several such nodes whose embedded NATS servers form a
NATS cluster, for failover tests. Both are sync and async context managers::

    with LiftbridgeServer() as server:
        client = LiftbridgeClient([server.broker])

    async with LiftbridgeCluster(size=3) as cluster:
        client = LiftbridgeClient(cluster.brokers)

``find_liftbridge()`` locates the server binary (``LIFTBRIDGE_BIN``, ``PATH``,
then lbwire's cache) and builds the pinned release with Go when it is missing.
``python -m lbwire.testing --install`` does the same and prints the path.

Nothing here listens on or contacts any address but 127.0.0.1: embedded NATS
gets an explicit loopback ``listen`` (it would bind 0.0.0.0:4222 otherwise), and
builds newer than v1.9.0 get telemetry switched off.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import inspect
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Optional, TypeVar, Union

import anyio
import anyio.to_thread

__all__ = [
    "LIFTBRIDGE_MODULE",
    "LIFTBRIDGE_VERSION",
    "LiftbridgeBuildError",
    "LiftbridgeCluster",
    "LiftbridgeNotFound",
    "LiftbridgeServer",
    "LiftbridgeStartError",
    "ReadyCheck",
    "TLSFiles",
    "binary_version",
    "cache_dir",
    "find_liftbridge",
    "needs_telemetry_key",
]

#: The Liftbridge release lbwire is tested against and builds when none is found.
LIFTBRIDGE_VERSION = "v1.9.0"
#: The Go module that holds the Liftbridge server.
LIFTBRIDGE_MODULE = "github.com/liftbridge-io/liftbridge"

LOOPBACK = "127.0.0.1"

#: Seconds a server gets to become ready before start() gives up.
DEFAULT_START_TIMEOUT = 60.0
#: Seconds a graceful stop (SIGINT) gets before the process is killed.
DEFAULT_STOP_TIMEOUT = 10.0
_BUILD_TIMEOUT = 1800.0
_POLL_INTERVAL = 0.05
#: How long a single node may take to elect itself before it is launched again.
_ELECTION_GRACE = 20.0
_LOG_TAIL_LINES = 40

_BECAME_LEADER = "Server became metadata leader"
_LOST_LEADERSHIP = "Server lost metadata leadership"

logger = logging.getLogger("lbwire.testing")

#: A readiness check run after the built-in conditions hold: it gets the server
#: and returns true when ready (false or an exception mean "not yet"). It may
#: return an awaitable; that is run with ``anyio.run`` in the waiting thread,
#: where no event loop is running.
ReadyCheck = Callable[["LiftbridgeServer"], Union[bool, Awaitable[bool]]]


class LiftbridgeNotFound(RuntimeError):
    """No Liftbridge server binary was found and none could be built."""


class LiftbridgeBuildError(LiftbridgeNotFound):
    """Building Liftbridge with Go failed; the message ends with the build log."""


class LiftbridgeStartError(RuntimeError):
    """A Liftbridge server exited or did not become ready in time.

    The message names the log file and ends with its last lines.
    """


@dataclass(frozen=True)
class TLSFiles:
    """TLS material for the server's gRPC listener (PEM file paths).

    With ``client_ca`` set, the server requires client certificates signed by
    it (``tls.client.auth.enabled``).
    """

    cert: Union[str, os.PathLike[str]]
    key: Union[str, os.PathLike[str]]
    client_ca: Optional[Union[str, os.PathLike[str]]] = None


# --------------------------------------------------------------------------
# Finding and building the binary


def cache_dir() -> Path:
    """Return the directory lbwire caches built Liftbridge binaries in.

    ``$LBWIRE_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/lbwire``, else
    ``~/.cache/lbwire``.
    """
    explicit = os.environ.get("LBWIRE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "lbwire"


def _cached_binary(version: str = LIFTBRIDGE_VERSION) -> Path:
    return cache_dir() / f"liftbridge-{version}" / "liftbridge"


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _not_found_message(reason: str) -> str:
    return (
        f"{reason}. To run a Liftbridge server lbwire needs its binary: set "
        f"LIFTBRIDGE_BIN=/path/to/liftbridge, put `liftbridge` on PATH, or "
        f"install Go (https://go.dev/dl/) so lbwire can build Liftbridge "
        f"{LIFTBRIDGE_VERSION} into {_cached_binary().parent} "
        f"(`python -m lbwire.testing --install` does it ahead of time)."
    )


def find_liftbridge(*, build: bool = True) -> str:
    """Return the path of a Liftbridge server binary, building it if need be.

    Looks at ``$LIFTBRIDGE_BIN``, then ``liftbridge`` on ``PATH``, then the
    cache (:func:`cache_dir`). If none is there and ``build`` is true, builds
    :data:`LIFTBRIDGE_VERSION` with Go into the cache (about a minute on a cold
    Go cache; concurrent callers wait for one build).

    Raises:
        LiftbridgeNotFound: ``$LIFTBRIDGE_BIN`` names no executable file, or
            nothing was found and building was off or Go is not installed.
        LiftbridgeBuildError: the Go build failed.

    """
    explicit = os.environ.get("LIFTBRIDGE_BIN")
    if explicit:
        path = Path(explicit).expanduser()
        if not _is_executable(path):
            raise LiftbridgeNotFound(
                f"LIFTBRIDGE_BIN={explicit!r} is not an executable file; point it "
                f"at a Liftbridge server binary or unset it"
            )
        return str(path.resolve())
    on_path = shutil.which("liftbridge")
    if on_path:
        return on_path
    cached = _cached_binary()
    if _is_executable(cached):
        return str(cached)
    if not build:
        raise LiftbridgeNotFound(_not_found_message("Liftbridge binary not found"))
    go = shutil.which("go")
    if go is None:
        raise LiftbridgeNotFound(
            _not_found_message("Liftbridge binary not found and Go is not installed")
        )
    return _build_liftbridge(go, cached)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (so parallel test runs build once)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _run_logged(
    argv: Sequence[str],
    log_path: Path,
    *,
    cwd: Optional[Path] = None,
    env: Optional[Mapping[str, str]] = None,
    stdout_to_log: bool = True,
) -> tuple[int, str]:
    """Run ``argv``, appending its output to ``log_path``; return (code, stdout).

    With ``stdout_to_log`` false, stdout is captured and returned instead.
    """
    with open(log_path, "a") as log:
        log.write(f"\n$ {' '.join(argv)}" + (f"  (in {cwd})" if cwd else "") + "\n")
        log.flush()
        try:
            done = subprocess.run(
                list(argv),
                cwd=cwd,
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=log if stdout_to_log else subprocess.PIPE,
                stderr=log,
                text=True,
                timeout=_BUILD_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            log.write(f"timed out after {_BUILD_TIMEOUT:.0f} s\n")
            return -1, ""
        except OSError as exc:
            log.write(f"cannot run: {exc}\n")
            return -1, ""
        log.write(f"exit status {done.returncode}\n")
        return done.returncode, done.stdout or ""


def _build_liftbridge(go: str, target: Path) -> str:
    dest = target.parent
    dest.mkdir(parents=True, exist_ok=True)
    log_path = dest / "build.log"
    with _file_lock(dest / ".lock"):
        if _is_executable(target):  # another process built it while we waited
            return str(target)
        spec = f"{LIFTBRIDGE_MODULE}@{LIFTBRIDGE_VERSION}"
        logger.warning(
            "building Liftbridge %s with Go into %s (log: %s)",
            LIFTBRIDGE_VERSION,
            dest,
            log_path,
        )
        staging = Path(tempfile.mkdtemp(prefix=".build-", dir=dest))
        try:
            env = dict(os.environ, GOBIN=str(staging), GOWORK="off")
            log_size = log_path.stat().st_size if log_path.exists() else 0
            code, _ = _run_logged([go, "install", spec], log_path, env=env)
            built = staging / "liftbridge"
            if code != 0 or not _is_executable(built):
                # `go install pkg@version` always fetches the version list for
                # its deprecation check; proxies that refuse @v/list make it
                # fail although the module itself is served. Building inside
                # the downloaded module needs only the module and its go.sum.
                with open(log_path, "rb") as log:
                    log.seek(log_size)
                    output = log.read().decode(errors="replace").splitlines()
                go_says = [
                    line.strip()
                    for line in output
                    if line.strip() and not line.startswith(("$ ", "exit status"))
                ]
                logger.warning(
                    "`go install %s` failed (%s); falling back to `go mod download` + `go build`",
                    spec,
                    " ".join(go_says[-2:]) or f"exit status {code}",
                )
                _build_in_module(go, spec, built, log_path)
            os.replace(built, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    logger.warning("built %s", target)
    return str(target)


def _build_in_module(go: str, spec: str, output: Path, log_path: Path) -> None:
    env = dict(os.environ, GOWORK="off")
    code, out = _run_logged(
        [go, "mod", "download", "-json", spec], log_path, env=env, stdout_to_log=False
    )
    module_dir = ""
    with contextlib.suppress(ValueError):
        module_dir = str(json.loads(out).get("Dir", ""))
    if code != 0 or not module_dir:
        with open(log_path, "a") as log:
            log.write(out)
        raise LiftbridgeBuildError(
            f"`go mod download {spec}` failed; build log {log_path}:\n{_tail(log_path)}"
        )
    code, _ = _run_logged(
        [go, "build", "-o", str(output), "."], log_path, cwd=Path(module_dir), env=env
    )
    if code != 0 or not _is_executable(output):
        raise LiftbridgeBuildError(
            f"building Liftbridge {LIFTBRIDGE_VERSION} failed; build log "
            f"{log_path}:\n{_tail(log_path)}"
        )


_version_cache: dict[tuple[str, int], str] = {}


def binary_version(binary: str) -> str:
    """Return the version a Liftbridge binary reports (``v1.9.0``, ``dev``, ...).

    Raises:
        LiftbridgeNotFound: the binary cannot be run.

    """
    try:
        key = (binary, os.stat(binary).st_mtime_ns)
    except OSError as exc:
        raise LiftbridgeNotFound(f"cannot use Liftbridge binary {binary}: {exc}") from exc
    if key not in _version_cache:
        try:
            done = subprocess.run(
                [binary, "--version"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LiftbridgeNotFound(f"cannot run {binary} --version: {exc}") from exc
        output = (done.stdout + done.stderr).strip()
        found = re.search(r"version\s+(\S+)", output)
        _version_cache[key] = found.group(1) if found else output
    return _version_cache[key]


def needs_telemetry_key(version: str) -> bool:
    """Tell whether a server of this version must get ``telemetry.enabled: false``.

    Releases up to v1.9.0 have no telemetry and reject the unknown key; later
    builds (``dev``, CalVer) send telemetry unless the config file disables it.
    Anything not recognisably v1.0.0 to v1.9.0 gets the key: a wrong guess then
    fails loudly ("Unknown configuration setting") instead of phoning home.
    """
    found = re.fullmatch(r"v?(1)\.(\d+)\.(\d+)", version.strip())
    release = tuple(int(part) for part in found.groups()) if found else None
    return release is None or release > (1, 9, 0)


# --------------------------------------------------------------------------
# Configuration


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


def _liftbridge_config(
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
    """Build the (nested) Liftbridge configuration for one node."""
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
    if needs_telemetry_key(version):
        flat["telemetry.enabled"] = False
    config: dict[str, Any] = {}
    _nest(flat, config)
    if overrides:
        _nest(overrides, config)
    return config


def _nats_config(port: int, cluster_port: Optional[int], routes: Sequence[int]) -> str:
    lines = [f"listen: {LOOPBACK}:{port}"]
    if cluster_port is not None:
        route_urls = ", ".join(f'"nats-route://{LOOPBACK}:{p}"' for p in routes)
        lines.append(
            f"cluster {{\n  name: lbwire\n  listen: {LOOPBACK}:{cluster_port}\n"
            f"  routes: [{route_urls}]\n}}"
        )
    return "\n".join(lines) + "\n"


def _free_ports(count: int) -> list[int]:
    """Return ``count`` distinct ports free on 127.0.0.1 right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _check_port_free(port: int) -> None:
    """Raise LiftbridgeStartError if something listens on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the server's own listener: TIME_WAIT leftovers do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            raise LiftbridgeStartError(
                f"cannot start Liftbridge on {LOOPBACK}:{port}: the port is in use "
                f"by another process ({exc.strerror}); stop it or pick another port"
            ) from None


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


# Processes still running at interpreter exit are killed so none outlives it.
_live_processes: weakref.WeakSet[subprocess.Popen[bytes]] = weakref.WeakSet()


def _kill_leftovers() -> None:
    for process in list(_live_processes):
        if process.poll() is None:
            process.kill()


atexit.register(_kill_leftovers)


# --------------------------------------------------------------------------
# One node


class _Managed:
    """Sync and async context management for servers and clusters.

    Entering starts (and closes again if the start fails, keeping the logs
    the error points at); leaving closes. The async forms run the blocking
    work in a worker thread, shielded: a cancelled test must not leave
    processes behind.
    """

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _keep_logs(self) -> None:
        raise NotImplementedError

    def _start_or_close(self) -> None:
        try:
            self.start()
        except BaseException:
            self._keep_logs()
            self.close()
            raise

    def __enter__(self: _M) -> _M:
        self._start_or_close()
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    async def __aenter__(self: _M) -> _M:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._start_or_close)
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.close)


_M = TypeVar("_M", bound=_Managed)


@dataclass
class _Membership:
    """How a node belongs to a LiftbridgeCluster."""

    cluster: LiftbridgeCluster
    server_id: str
    nats_cluster_port: int
    nats_routes: list[int]
    peers: list[str]


class LiftbridgeServer(_Managed):
    """One real Liftbridge node on 127.0.0.1, for the length of a ``with`` block.

    The server gets free ports for gRPC and embedded NATS (``port`` pins the
    gRPC port instead, e.g. 9292 for programs that hard-code it; the server
    then refuses to start if another process holds that port), a temporary data
    directory, Raft bootstrapped as a single seed, and cursor management
    enabled (``cursors_partitions`` partitions). ``config_overrides`` is merged
    last, with dotted (``"streams.retention.max.age": "1h"``) or nested keys; a
    value of None removes a key. ``tls`` turns on TLS for the gRPC listener.

    Use it as a context manager (``with`` or ``async with``; the async form
    waits in a worker thread, so it works on asyncio and trio) or call
    :meth:`start` and :meth:`close`. :meth:`stop`, :meth:`kill` and
    :meth:`restart` keep ports and data, for restart and failover tests.

    Readiness: the process runs, the log says it became metadata leader (in a
    cluster: a leader replicates to it), the gRPC port accepts connections, and
    ``ready_check`` (if given) returns true.
    """

    def __init__(
        self,
        *,
        port: Optional[int] = None,
        binary: Optional[str] = None,
        cursors_partitions: int = 1,
        config_overrides: Optional[Mapping[str, Any]] = None,
        tls: Optional[TLSFiles] = None,
        log_level: str = "info",
        start_timeout: float = DEFAULT_START_TIMEOUT,
        ready_check: Optional[ReadyCheck] = None,
        keep_files: bool = False,
        _membership: Optional[_Membership] = None,
        _ports: Optional[tuple[int, int]] = None,
    ) -> None:
        self._binary = binary
        self._cursors_partitions = cursors_partitions
        self._overrides = dict(config_overrides or {})
        self._tls = tls
        self._log_level = log_level
        self._start_timeout = start_timeout
        self._ready_check = ready_check
        self._keep_files = keep_files
        self._membership = _membership
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port must be in 1-65535, not {port}")
        if port is not None and _ports is not None:
            raise ValueError("give either port or _ports, not both")
        #: The gRPC port asked for with ``port`` (None: a free one is picked).
        self._requested_port = port
        self._ports_fixed = _ports is not None or port is not None
        self.port, self.nats_port = _ports if _ports is not None else (port or 0, 0)
        #: Always 127.0.0.1.
        self.host = LOOPBACK
        self._workdir: Optional[Path] = None
        self._process: Optional[subprocess.Popen[bytes]] = None
        self._log_start = 0  # log offset where the current run's output begins
        self._starts = 0
        self._ever_ready = False
        self._lock = threading.Lock()

    # -- public state -----------------------------------------------------

    @property
    def broker(self) -> str:
        """``"127.0.0.1:<port>"``, the address clients connect to."""
        return f"{self.host}:{self.port}"

    @property
    def workdir(self) -> Path:
        """The temporary directory holding config files, log and data."""
        if self._workdir is None:
            raise RuntimeError("the Liftbridge server has not been started")
        return self._workdir

    @property
    def log_path(self) -> Path:
        """The file the server's stdout and stderr go to (kept across restarts)."""
        return self.workdir / "liftbridge.log"

    @property
    def data_dir(self) -> Path:
        """The server's ``data.dir``."""
        return self.workdir / "data"

    @property
    def config_path(self) -> Path:
        """The Liftbridge configuration file."""
        return self.workdir / "liftbridge.yaml"

    @property
    def server_id(self) -> Optional[str]:
        """The Liftbridge server id set in the config (cluster nodes only)."""
        return self._membership.server_id if self._membership else None

    @property
    def pid(self) -> Optional[int]:
        """The process id while the server process exists, else None."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def log_text(self, *, current_run: bool = False) -> str:
        """Return the log; with ``current_run``, only what the last start wrote."""
        return self._log_bytes(self._log_start if current_run else 0).decode(errors="replace")

    def _log_bytes(self, offset: int = 0) -> bytes:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                return log.read()
        except (OSError, RuntimeError):
            return b""

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """Return the last ``lines`` lines of the log."""
        return _tail(self.log_path, lines)

    # -- lifecycle --------------------------------------------------------

    def start(self) -> None:
        """Start the server and wait until it is ready (also after stop/kill).

        Raises:
            LiftbridgeNotFound: no binary (see :func:`find_liftbridge`).
            LiftbridgeStartError: the server exited or was not ready in time.

        """
        deadline = time.monotonic() + self._start_timeout
        relaunched = False
        while True:
            self._launch()
            try:
                if self._membership is None and not relaunched:
                    # A lone v1.9.0 node restarted on its data after a kill
                    # sometimes never elects itself (seen in about 1 of 50
                    # restarts); a second launch on the same data does.
                    attempt_deadline = min(deadline, time.monotonic() + _ELECTION_GRACE)
                    self._wait_ready(attempt_deadline)
                else:
                    self._wait_ready(deadline)
            except LiftbridgeStartError:
                if (
                    not relaunched
                    and self._membership is None
                    and self.running
                    and time.monotonic() < deadline
                ):
                    logger.warning("Liftbridge %s: not ready, launching it again", self.broker)
                    relaunched = True
                    self.kill()
                    continue
                # Another process may have taken a port between our probe and
                # the server's bind: pick new ports, unless they are pinned
                # (restarts, cluster members).
                if (
                    self._ports_fixed
                    or self._ever_ready
                    or self.running
                    or ("address already in use" not in self.log_text(current_run=True))
                ):
                    raise
                logger.warning("Liftbridge %s: port taken, retrying", self.broker)
                self.port = self.nats_port = 0
                continue
            self._ever_ready = True
            return

    def _launch(self) -> None:
        """Write the config files and start the process without waiting."""
        with self._lock:
            if self.running:
                raise RuntimeError(f"Liftbridge {self.broker} is already running")
            if self._requested_port is not None and self._starts == 0:
                _check_port_free(self._requested_port)
            if self._binary is None:
                self._binary = find_liftbridge()
            if self._workdir is None:
                self._workdir = Path(tempfile.mkdtemp(prefix="lbwire-liftbridge-"))
                self.data_dir.mkdir()
            if not self.port:
                self.port, self.nats_port = _free_ports(2)
            elif not self.nats_port:
                self.nats_port = next(p for p in _free_ports(2) if p != self.port)
            self._write_config()
            if self._membership is not None:
                self._membership.cluster._node_launched(self)
            env = dict(os.environ)
            # Belt and braces: post-v1.9.0 builds read the config key, not this.
            env["LIFTBRIDGE_TELEMETRY_ENABLED"] = "false"
            with open(self.log_path, "ab") as log:
                self._starts += 1
                log.write(f"--- lbwire: start #{self._starts} ---\n".encode())
                log.flush()
                self._log_start = log.tell()
                self._process = subprocess.Popen(
                    [self._binary, "--config", str(self.config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.workdir,
                    start_new_session=True,  # a terminal's Ctrl-C is ours to pass on
                )
            _live_processes.add(self._process)

    def _write_config(self) -> None:
        assert self._binary is not None
        member = self._membership
        nats_config = self.workdir / "nats.conf"
        nats_config.write_text(
            _nats_config(
                self.nats_port,
                member.nats_cluster_port if member else None,
                member.nats_routes if member else (),
            )
        )
        config = _liftbridge_config(
            version=binary_version(self._binary),
            port=self.port,
            nats_port=self.nats_port,
            nats_config=nats_config,
            data_dir=self.data_dir,
            log_level=self._log_level,
            cursors_partitions=self._cursors_partitions,
            tls=self._tls,
            server_id=member.server_id if member else None,
            bootstrap_peers=member.peers if member else None,
            overrides=self._overrides,
        )
        # JSON is YAML; no YAML writer needed.
        self.config_path.write_text(json.dumps(config, indent=2) + "\n")

    def _wait_ready(self, deadline: float) -> None:
        """Block until the server is ready or raise LiftbridgeStartError.

        Each condition is polled in order until ``deadline`` (monotonic
        clock); ``_not_ready_reason`` names the first that does not hold.
        """
        while True:
            reason = self._not_ready_reason()
            if reason is None:
                return
            if self._process is None or self._process.poll() is not None:
                code = self._process.returncode if self._process else None
                raise self._start_error(f"the server exited with status {code}")
            if time.monotonic() >= deadline:
                raise self._start_error(f"not ready in time: {reason}")
            time.sleep(_POLL_INTERVAL)

    def _not_ready_reason(self) -> Optional[str]:
        """Return why the server is not ready yet, or None when it is."""
        if not self.running:
            return "the process is not running"
        if self._membership is None:
            if _BECAME_LEADER not in self.log_text(current_run=True):
                return "no 'became metadata leader' line in the log"
        else:
            reason = self._membership.cluster._not_joined_reason(self)
            if reason is not None:
                return reason
        if not _accepts_connections(self.port):
            return f"nothing accepts connections on {self.broker}"
        if self._ready_check is not None:
            try:
                result = self._ready_check(self)
                if inspect.isawaitable(result):
                    result = anyio.run(_await, result)
            except Exception as exc:
                return f"ready_check raised {exc!r}"
            if not result:
                return "ready_check returned false"
        return None

    def _start_error(self, what: str) -> LiftbridgeStartError:
        return LiftbridgeStartError(
            f"Liftbridge {self.broker}: {what}; log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, grace: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop the server gracefully, killing it after ``grace`` seconds.

        Liftbridge v1.9.0 shuts down cleanly on SIGINT only (SIGTERM ends it
        like SIGKILL), so SIGINT is sent. Ports and data directory are kept.
        """
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            logger.warning(
                "Liftbridge %s ignored SIGINT for %.0f s; killing it",
                self.broker,
                grace,
            )
            self.kill()

    def kill(self) -> None:
        """Kill the server process at once (SIGKILL), as a crash would."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def restart(self) -> None:
        """Stop the server and start it again on the same ports and data."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and delete its data (and, unless kept, log and config)."""
        try:
            self.stop()
        finally:
            if self._workdir is not None:
                shutil.rmtree(self.data_dir, ignore_errors=True)
                if not self._keep_files:
                    shutil.rmtree(self._workdir, ignore_errors=True)

    def _keep_logs(self) -> None:
        self._keep_files = True

    # -- async twins (blocking waits run in a worker thread) --------------

    async def astart(self) -> None:
        """Async :meth:`start`."""
        await anyio.to_thread.run_sync(self.start)

    async def astop(self, grace: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Async :meth:`stop`."""
        await anyio.to_thread.run_sync(self.stop, grace)

    async def akill(self) -> None:
        """Async :meth:`kill`."""
        await anyio.to_thread.run_sync(self.kill)

    async def arestart(self) -> None:
        """Async :meth:`restart`."""
        await anyio.to_thread.run_sync(self.restart)

    async def aclose(self) -> None:
        """Async :meth:`close`; runs to the end even when cancelled."""
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.close)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LiftbridgeServer {self.broker} {state} log={self._workdir}>"


async def _await(awaitable: Awaitable[bool]) -> bool:
    return await awaitable


# --------------------------------------------------------------------------
# A cluster


class LiftbridgeCluster(_Managed):
    """``size`` Liftbridge nodes on 127.0.0.1 forming one cluster.

    Each node embeds its own NATS server; the NATS servers are joined by
    routes, so killing one node leaves NATS working for the others. The
    metadata Raft group is bootstrapped with every node's server id
    (``clustering.raft.bootstrap.peers``), so nodes may start in any order.

    The cluster is ready when one running node is metadata leader and its Raft
    log shows it replicating to every other running node. ``nodes[i]`` has
    ``stop``/``kill``/``restart``; a restarted node waits until the leader
    replicates to it again. Other arguments are as for :class:`LiftbridgeServer`
    and apply to every node.
    """

    def __init__(
        self,
        size: int = 3,
        *,
        binary: Optional[str] = None,
        cursors_partitions: int = 1,
        config_overrides: Optional[Mapping[str, Any]] = None,
        log_level: str = "info",
        start_timeout: float = DEFAULT_START_TIMEOUT,
        keep_files: bool = False,
    ) -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one node")
        self.size = size
        self._binary = binary
        self._start_timeout = start_timeout
        self._node_options: dict[str, Any] = {
            "cursors_partitions": cursors_partitions,
            "config_overrides": config_overrides,
            "log_level": log_level,
            "start_timeout": start_timeout,
            "keep_files": keep_files,
        }
        self.nodes: list[LiftbridgeServer] = []
        # Log offsets of every node at the moment a node was last launched.
        self._marks: dict[int, dict[int, int]] = {}

    @property
    def brokers(self) -> list[str]:
        """Every node's ``"127.0.0.1:<port>"``, in node order."""
        return [node.broker for node in self.nodes]

    def start(self) -> None:
        """Start every node and wait until the cluster is ready.

        Raises:
            LiftbridgeNotFound: no binary (see :func:`find_liftbridge`).
            LiftbridgeStartError: a node exited or the cluster was not ready in
                time; the message names the node's log.

        """
        binary = self._binary or find_liftbridge()
        if not self.nodes:
            ports = _free_ports(3 * self.size)
            grpc_ports = ports[0::3]
            nats_ports = ports[1::3]
            route_ports = ports[2::3]
            ids = [f"lbwire-node{i}" for i in range(self.size)]
            for i in range(self.size):
                membership = _Membership(
                    cluster=self,
                    server_id=ids[i],
                    nats_cluster_port=route_ports[i],
                    nats_routes=[p for j, p in enumerate(route_ports) if j != i],
                    peers=ids,
                )
                self.nodes.append(
                    LiftbridgeServer(
                        binary=binary,
                        _membership=membership,
                        _ports=(grpc_ports[i], nats_ports[i]),
                        **self._node_options,
                    )
                )
        deadline = time.monotonic() + self._start_timeout
        for node in self.nodes:
            if not node.running:
                node._launch()
        for node in self.nodes:
            node._wait_ready(deadline)

    def metadata_leader(self) -> Optional[LiftbridgeServer]:
        """Return the running node whose log says it is metadata leader, if one."""
        leaders = [node for node in self.nodes if self._claims_leadership(node)]
        return leaders[0] if len(leaders) == 1 else None

    @staticmethod
    def _claims_leadership(node: LiftbridgeServer) -> bool:
        if not node.running:
            return False
        log = node.log_text(current_run=True)
        return log.rfind(_BECAME_LEADER) > log.rfind(_LOST_LEADERSHIP)

    def _node_launched(self, node: LiftbridgeServer) -> None:
        index = self.nodes.index(node)
        self._marks[index] = {i: len(other._log_bytes()) for i, other in enumerate(self.nodes)}

    def _not_joined_reason(self, node: LiftbridgeServer) -> Optional[str]:
        """Why ``node`` is not (yet) a replicating member, or None if it is."""
        leader = self.metadata_leader()
        if leader is None:
            return "no metadata leader among the running nodes"
        if leader is node:
            return None
        marks = self._marks.get(self.nodes.index(node), {})
        leader_index = self.nodes.index(leader)
        since = max(leader._log_start, marks.get(leader_index, 0))
        log = leader._log_bytes(since)
        # Only what the leader logged in its current term counts.
        log = log[max(0, log.rfind(b"raft: entering leader state")) :]
        # hashicorp/raft logs: pipelining replication: peer="{Voter <id> <addr>}"
        joined = re.compile(
            rb"pipelining replication: peer=\W*\{\w+ "
            + re.escape(str(node.server_id).encode())
            + rb" "
        )
        if not joined.search(log):
            return f"metadata leader {leader.server_id} does not replicate to it yet"
        return None

    def wait_ready(self, timeout: Optional[float] = None) -> LiftbridgeServer:
        """Wait until a leader replicates to every running node; return the leader.

        Raises:
            LiftbridgeStartError: not ready within ``timeout`` (default: the
                cluster's start timeout).

        """
        deadline = time.monotonic() + (timeout or self._start_timeout)
        while True:
            for node in self.nodes:
                if node.running:
                    node._wait_ready(deadline)
            leader = self.metadata_leader()
            if leader is not None:
                return leader
            # Leadership moved while we checked the others: check again.

    async def await_ready(self) -> LiftbridgeServer:
        """Async :meth:`wait_ready` (bounded by the cluster's start timeout)."""
        return await anyio.to_thread.run_sync(self.wait_ready)

    def stop(self) -> None:
        """Stop every node gracefully (data kept)."""
        for node in self.nodes:
            node.stop()

    def close(self) -> None:
        """Stop every node and delete their data."""
        for node in self.nodes:
            node.close()

    def _keep_logs(self) -> None:
        for node in self.nodes:
            node._keep_logs()

    def __repr__(self) -> str:
        return f"<LiftbridgeCluster {self.brokers}>"


# --------------------------------------------------------------------------
# Command line


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m lbwire.testing``: find or build Liftbridge, or run a server."""
    parser = argparse.ArgumentParser(
        prog="python -m lbwire.testing",
        description="Throwaway Liftbridge servers for tests.",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument(
        "--install",
        action="store_true",
        help=f"find the Liftbridge binary, building {LIFTBRIDGE_VERSION} with Go "
        "if needed, and print its path",
    )
    action.add_argument(
        "--serve",
        action="store_true",
        help="run a throwaway server on 127.0.0.1 until interrupted",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        binary = find_liftbridge()
        if args.install:
            print(binary)
            return 0
        with LiftbridgeServer(binary=binary) as server:
            print(
                f"Liftbridge {server.broker} (log {server.log_path}); Ctrl-C stops it",
                flush=True,
            )
            with contextlib.suppress(KeyboardInterrupt):
                while server.running:
                    time.sleep(0.5)
        return 0
    except (LiftbridgeNotFound, LiftbridgeStartError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
