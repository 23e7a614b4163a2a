"""Finding, building and identifying Liftbridge server binaries.

Two server generations are known: the pinned release :data:`LIFTBRIDGE_VERSION`
(v1.9.0, built from the Go module proxy) and ``"newest"``, Liftbridge's main
branch at :data:`NEWEST_COMMIT`, built from a source tarball because the module
proxy does not serve it. Both are cached under :func:`cache_dir`, one directory
per version or commit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Optional

logger = logging.getLogger("lbwire.testing")

#: The Liftbridge release lbwire is tested against and builds when none is found.
LIFTBRIDGE_VERSION = "v1.9.0"
#: The Go module that holds the Liftbridge server.
LIFTBRIDGE_MODULE = "github.com/liftbridge-io/liftbridge"
#: The name that selects the newest Liftbridge (built from source).
NEWEST = "newest"
#: Every server generation lbwire can build and is tested against.
SERVER_VERSIONS = (LIFTBRIDGE_VERSION, NEWEST)
#: The commit of Liftbridge's main branch that ``"newest"`` is built from.
NEWEST_COMMIT = "50ac358b41eb"
#: The file name of the newest server's source tarball.
NEWEST_TARBALL = f"liftbridge-main-{NEWEST_COMMIT}.tar.gz"

#: Environment variable choosing the server generation (``v1.9.0`` or ``newest``).
SERVER_ENV = "LBWIRE_SERVER"
#: Environment variable naming the newest server's source tarball (or its folder).
SOURCE_ENV = "LBWIRE_LIFTBRIDGE_SOURCE"

_BUILD_TIMEOUT = 1800.0
_LOG_TAIL_LINES = 40


class LiftbridgeNotFound(RuntimeError):
    """No Liftbridge server binary was found and none could be built."""


class LiftbridgeBuildError(LiftbridgeNotFound):
    """Building Liftbridge with Go failed; the message ends with the build log."""


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


def selected_version(version: Optional[str] = None) -> str:
    """Return the server generation to use: ``version``, else ``$LBWIRE_SERVER``.

    Without either, the pinned :data:`LIFTBRIDGE_VERSION`.

    Raises:
        ValueError: the version is not one of :data:`SERVER_VERSIONS`.

    """
    chosen = version or os.environ.get(SERVER_ENV) or LIFTBRIDGE_VERSION
    if chosen not in SERVER_VERSIONS:
        source = "version" if version else f"${SERVER_ENV}"
        raise ValueError(
            f"{source}={chosen!r}: lbwire knows the Liftbridge servers {', '.join(SERVER_VERSIONS)}"
        )
    return chosen


def cached_binary(version: Optional[str] = None) -> Path:
    """Return where the binary of this server generation is cached (if built)."""
    chosen = selected_version(version)
    key = f"main-{NEWEST_COMMIT}" if chosen == NEWEST else chosen
    return cache_dir() / f"liftbridge-{key}" / "liftbridge"


def newest_source() -> Path:
    """Return the path of the newest server's source tarball (which may be missing).

    ``$LBWIRE_LIFTBRIDGE_SOURCE`` (the tarball, or a folder holding it) if set,
    else ``../shared/liftbridge/`` beside the lbwire checkout.
    """
    explicit = os.environ.get(SOURCE_ENV)
    if explicit:
        path = Path(explicit).expanduser()
        return path / NEWEST_TARBALL if path.is_dir() else path
    checkout = Path(__file__).resolve().parents[2]
    return checkout.parent / "shared" / "liftbridge" / NEWEST_TARBALL


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _not_found_message(reason: str, version: str) -> str:
    return (
        f"{reason}. To run a Liftbridge server lbwire needs its binary: set "
        f"LIFTBRIDGE_BIN=/path/to/liftbridge, put `liftbridge` on PATH, or "
        f"install Go (https://go.dev/dl/) so lbwire can build Liftbridge "
        f"{version} into {cached_binary(version).parent} "
        f"(`python -m lbwire.testing --install --server {version}` does it ahead of time)."
    )


def find_liftbridge(*, build: bool = True, version: Optional[str] = None) -> str:
    """Return the path of a Liftbridge server binary, building it if need be.

    ``version`` picks the server generation (``"v1.9.0"`` or ``"newest"``);
    without it, ``$LBWIRE_SERVER`` does, and else the pinned v1.9.0.

    Looks at ``$LIFTBRIDGE_BIN`` (used as it is, whatever it reports, unless a
    ``version`` argument asks for another generation than it reports), then,
    for v1.9.0 only, ``liftbridge`` on ``PATH``, then the cache
    (:func:`cache_dir`). If none is there and ``build`` is true, builds the
    server with Go into the cache (concurrent callers wait for one build):
    v1.9.0 from the Go module proxy, the newest from its source tarball
    (:func:`newest_source`) with its dependencies from the module proxy.

    Raises:
        ValueError: an unknown version.
        LiftbridgeNotFound: ``$LIFTBRIDGE_BIN`` names no executable file, or
            nothing was found and building was off, Go is not installed or
            the newest server's source tarball is missing.
        LiftbridgeBuildError: the Go build failed.

    """
    chosen = selected_version(version)
    explicit = os.environ.get("LIFTBRIDGE_BIN")
    if explicit:
        path = Path(explicit).expanduser()
        if not _is_executable(path):
            raise LiftbridgeNotFound(
                f"LIFTBRIDGE_BIN={explicit!r} is not an executable file; point it "
                f"at a Liftbridge server binary or unset it"
            )
        if version is None or server_generation(binary_version(str(path))) == chosen:
            return str(path.resolve())
    if chosen == LIFTBRIDGE_VERSION:
        on_path = shutil.which("liftbridge")
        if on_path:
            return on_path
    cached = cached_binary(chosen)
    if _is_executable(cached):
        return str(cached)
    if not build:
        raise LiftbridgeNotFound(_not_found_message("Liftbridge binary not found", chosen))
    if chosen == NEWEST and not newest_source().is_file():
        raise LiftbridgeNotFound(
            f"the newest Liftbridge is built from its source tarball, expected at "
            f"{newest_source()}; put {NEWEST_TARBALL} there or set "
            f"{SOURCE_ENV}=/path/to/{NEWEST_TARBALL}"
        )
    go = shutil.which("go")
    if go is None:
        raise LiftbridgeNotFound(
            _not_found_message("Liftbridge binary not found and Go is not installed", chosen)
        )
    return _build(go, chosen, cached)


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


def tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """Return the last ``lines`` lines of a text file (or why it cannot be read)."""
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


def _go_env() -> dict[str, str]:
    # A go.work around the cache directory must not leak into the build.
    return dict(os.environ, GOWORK="off")


def _build(go: str, version: str, target: Path) -> str:
    dest = target.parent
    dest.mkdir(parents=True, exist_ok=True)
    log_path = dest / "build.log"
    with _file_lock(dest / ".lock"):
        if _is_executable(target):  # another process built it while we waited
            return str(target)
        logger.warning("building Liftbridge %s with Go into %s (log: %s)", version, dest, log_path)
        staging = Path(tempfile.mkdtemp(prefix=".build-", dir=dest))
        try:
            built = staging / "liftbridge"
            if version == NEWEST:
                _build_from_source(go, newest_source(), staging, built, log_path)
            else:
                _build_release(go, staging, built, log_path)
            os.replace(built, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    logger.warning("built %s", target)
    return str(target)


def _build_release(go: str, staging: Path, built: Path, log_path: Path) -> None:
    spec = f"{LIFTBRIDGE_MODULE}@{LIFTBRIDGE_VERSION}"
    log_size = log_path.stat().st_size if log_path.exists() else 0
    code, _ = _run_logged([go, "install", spec], log_path, env=dict(_go_env(), GOBIN=str(staging)))
    if code == 0 and _is_executable(built):
        return
    # `go install pkg@version` always fetches the version list for its
    # deprecation check; proxies that refuse @v/list make it fail although the
    # module itself is served. Building inside the downloaded module needs only
    # the module and its go.sum.
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
    code, out = _run_logged(
        [go, "mod", "download", "-json", spec], log_path, env=_go_env(), stdout_to_log=False
    )
    module_dir = ""
    with contextlib.suppress(ValueError):
        module_dir = str(json.loads(out).get("Dir", ""))
    if code != 0 or not module_dir:
        with open(log_path, "a") as log:
            log.write(out)
        raise LiftbridgeBuildError(
            f"`go mod download {spec}` failed; build log {log_path}:\n{tail(log_path)}"
        )
    _go_build(go, Path(module_dir), built, log_path, LIFTBRIDGE_VERSION)


def _build_from_source(go: str, tarball: Path, staging: Path, built: Path, log_path: Path) -> None:
    with open(log_path, "a") as log:
        log.write(f"\n$ extract {tarball} into {staging}\n")
    try:
        with tarfile.open(tarball) as archive:
            members = archive.getmembers()
            unsafe = [m.name for m in members if m.name.startswith("/") or ".." in m.name]
            if unsafe:
                raise LiftbridgeBuildError(f"{tarball} holds unsafe paths: {unsafe[:3]}")
            if hasattr(tarfile, "data_filter"):  # Python 3.12+, and 3.9.17+ backports
                archive.extractall(staging / "src", members=members, filter="data")
            else:  # names checked above
                archive.extractall(staging / "src", members=members)
    except (OSError, tarfile.TarError) as exc:
        raise LiftbridgeBuildError(f"cannot extract {tarball}: {exc}") from exc
    roots = [path.parent for path in (staging / "src").glob("*/go.mod")]
    if len(roots) != 1:
        raise LiftbridgeBuildError(
            f"{tarball} should hold one Go module folder (with go.mod) at its top, "
            f"found {len(roots)}"
        )
    _go_build(go, roots[0], built, log_path, f"{NEWEST} ({NEWEST_COMMIT})")


def _go_build(go: str, module_dir: Path, output: Path, log_path: Path, what: str) -> None:
    code, _ = _run_logged(
        # No VCS stamping: the source is not a git checkout.
        [go, "build", "-buildvcs=false", "-o", str(output), "."],
        log_path,
        cwd=module_dir,
        env=_go_env(),
    )
    if code != 0 or not _is_executable(output):
        raise LiftbridgeBuildError(
            f"building Liftbridge {what} failed; build log {log_path}:\n{tail(log_path)}"
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


def server_generation(version: str) -> str:
    """Map a version a binary reports to a server generation of :data:`SERVER_VERSIONS`.

    Releases up to v1.9.0 are ``"v1.9.0"``; everything later (``dev``,
    CalVer) is ``"newest"``.
    """
    return NEWEST if needs_telemetry_key(version) else LIFTBRIDGE_VERSION
