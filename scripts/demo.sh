#!/usr/bin/env bash
# The lbwire demo, from a fresh clone: sets up .venv, builds the pinned
# Liftbridge server with Go on first use (cached), and runs examples/demo.py.
# Extra arguments go to the demo (e.g. --trio).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[trio]'
if [ -z "${LIFTBRIDGE_BIN:-}" ]; then
    echo "[demo] locating the Liftbridge server (built with Go on first use, ~1 min)"
    LIFTBRIDGE_BIN=$(.venv/bin/python -m lbwire.testing --install)
fi
export LIFTBRIDGE_BIN
exec .venv/bin/python examples/demo.py "$@"
