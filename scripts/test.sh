#!/usr/bin/env bash
# The whole lbwire test suite, from a fresh clone (README "Run the tests").
#
# 1. CPython 3 with the upb (C) protobuf as the reference implementation;
# 2. the tests that use protobuf (tests/wire, tests/compat) with its pure-Python implementation;
# 3. the same suite on PyPy (Debian's pypy3, installed with apt-get if missing),
#    where tests needing grpcio (not installable on PyPy) skip with a reason;
# 4. the server-backed tests (marker `server`, without `slow`) on CPython
#    against the newest Liftbridge (LBWIRE_SERVER=newest), built from its source
#    tarball in ../shared/liftbridge/ (or $LBWIRE_LIFTBRIDGE_SOURCE).
# Runs 1-3 use the pinned Liftbridge v1.9.0. Both servers are built once with
# Go and cached. Set LBWIRE_SKIP_PYPY=1 to leave out step 3 on machines without
# apt.
set -euo pipefail
cd "$(dirname "$0")/.."

section() { printf '\n===== %s =====\n' "$*"; }

# pytest's exit 5 ("no tests collected") counts as a failure.
run_pytest() {
    local status=0
    "$@" || status=$?
    if [ "$status" -eq 5 ]; then
        echo "pytest collected no tests: treating that as a failure" >&2
        return 1
    fi
    return "$status"
}

PYTHON=${PYTHON:-python3}
export LBWIRE_CACHE_DIR=${LBWIRE_CACHE_DIR:-$HOME/.cache/lbwire}

section "CPython environment"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test,peers,dev,bench,docs]'
.venv/bin/python --version

section "Liftbridge servers"
# LBWIRE_SERVER picks the generation of every server the suite starts.
export LBWIRE_SERVER=v1.9.0
if [ -z "${LIFTBRIDGE_BIN:-}" ]; then
    LIFTBRIDGE_BIN=$(.venv/bin/python -m lbwire.testing --install --server v1.9.0)
fi
export LIFTBRIDGE_BIN
echo "v1.9.0: $LIFTBRIDGE_BIN ($("$LIFTBRIDGE_BIN" --version 2>&1 | head -n 1))"
NEWEST_BIN=$(.venv/bin/python -m lbwire.testing --install --server newest)
echo "newest: $NEWEST_BIN ($("$NEWEST_BIN" --version 2>&1 | head -n 1))"

section "tests: CPython, upb protobuf"
run_pytest .venv/bin/python -m pytest -q -p no:cacheprovider

# lbwire never imports protobuf: only the tests that compare with protobuf
# (tests/wire) or run gufo-liftbridge on it (tests/compat) can differ here.
section "tests: CPython, pure-Python protobuf (the tests that use protobuf)"
PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python \
    run_pytest .venv/bin/python -m pytest -q -p no:cacheprovider -m "not slow" tests/wire tests/compat

if [ "${LBWIRE_SKIP_PYPY:-0}" != "1" ]; then
    section "PyPy environment"
    if ! command -v pypy3 >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pypy3 pypy3-venv >/dev/null
    fi
    [ -x .venv-pypy/bin/python ] || pypy3 -m venv .venv-pypy
    .venv-pypy/bin/python -m pip install --quiet --upgrade pip
    .venv-pypy/bin/python -m pip install --quiet -e '.[test]'
    .venv-pypy/bin/python --version

    section "tests: PyPy"
    run_pytest .venv-pypy/bin/python -m pytest -q -p no:cacheprovider -m "not slow"
fi

# The layers that talk to the server (client, transport, TLS, clusters, the
# activity stream, lbwire.testing); the CLI, the blocking client,
# OpenTelemetry, the docs and gufo compatibility sit on top of them.
section "tests: CPython, the newest Liftbridge (server tests but slow ones)"
LBWIRE_SERVER=newest LIFTBRIDGE_BIN=$NEWEST_BIN \
    run_pytest .venv/bin/python -m pytest -q -p no:cacheprovider -m "server and not slow" \
    tests/client tests/transport tests/tls tests/cluster tests/activity \
    tests/test_server_generations.py tests/test_testing.py

section "all test runs passed"
