"""Build the Go reference client's benchmark program (benchmarks/go/).

The program uses go-liftbridge v2 from the Go module proxy, pinned with its
go.sum. It is built once per source version into lbwire's cache directory;
`build()` returns the binary, or a reason why there is none (Go missing, or
the build failed), which the run prints before going on without Go.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Optional, Tuple

from lbwire.testing import cache_dir

SOURCE_DIR = Path(__file__).resolve().parent / "go"
BUILD_TIMEOUT = 900.0


def _source_hash() -> str:
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update(name.encode() + b"\0" + (SOURCE_DIR / name).read_bytes())
    return digest.hexdigest()[:16]


def build(*, log: Optional[Path] = None) -> Tuple[Optional[str], str]:
    """Return (path of the built program, "") or (None, why not)."""
    go = shutil.which("go")
    if go is None:
        return None, "Go is not installed (https://go.dev/dl/)"
    target_dir = cache_dir() / "bench"
    target = target_dir / f"lbbench-{_source_hash()}"
    if target.is_file() and os.access(target, os.X_OK):
        return str(target), ""
    target_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")  # parallel runs
    # GOFLAGS=-mod=readonly: go.mod and go.sum are complete, nothing is added;
    # GOTOOLCHAIN=local: never fetch another toolchain.
    env = dict(os.environ, GOWORK="off", GOFLAGS="-mod=readonly", GOTOOLCHAIN="local")
    try:
        done = subprocess.run(
            [go, "build", "-o", str(partial), "."],
            cwd=SOURCE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"`go build` of benchmarks/go took over {BUILD_TIMEOUT:.0f} s"
    except OSError as exc:
        return None, f"cannot run Go: {exc}"
    if log is not None:
        log.write_text(done.stdout + done.stderr)
    if done.returncode != 0 or not partial.is_file():
        lines = (done.stdout + done.stderr).strip().splitlines()
        return None, "`go build` of benchmarks/go failed: " + " | ".join(lines[-3:])
    os.replace(partial, target)
    return str(target), ""
