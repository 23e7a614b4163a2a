#!/usr/bin/env bash
# The lbwire test suite, from a fresh clone (README "Testing").
#
#   bash scripts/test.sh           the whole suite: five passes (below)
#   bash scripts/test.sh --quick   the tests that need no server (but the package,
#                                  docs and benchmark builds), plus a smoke test
#                                  against a real server (for iterating)
#
# The passes of the whole suite:
# 1. CPython 3 with the upb (C) protobuf as the reference implementation, but
#    the `slow` tests, which pass 5 runs;
# 2. the tests that use protobuf (tests/wire, tests/compat) with its pure-Python implementation;
# 3. the suite but `slow` and `one_interpreter` tests (the harness, the CLI's
#    arguments and output) on PyPy (Debian's pypy3, installed with apt-get if
#    missing), where tests needing grpcio (not installable on PyPy) skip with a reason;
# 4. the server-backed tests (marker `server`, without `slow`) on CPython
#    against the newest Liftbridge (LBWIRE_SERVER=newest), built from its source
#    tarball in ../shared/liftbridge/ (or $LBWIRE_LIFTBRIDGE_SOURCE).
# Passes 1-3 use the pinned Liftbridge v1.9.0. Both servers are built once with
# Go and cached. Set LBWIRE_SKIP_PYPY=1 to leave out pass 3 on machines without
# apt.
#
# The passes run three at a time, each spreading its test files over
# pytest-xdist workers (LBWIRE_TEST_WORKERS per pass, default one per core;
# half that for the third, one more for the slow pass: five or six workers
# on 2 cores, whose tests mostly wait). Every pass runs even if
# another failed; a summary gives each one's time and result, and the script
# exits non-zero if any failed (pytest's exit 5, "no tests collected", counts
# as a failure). SIGINT or SIGTERM ends every pass, with the servers they
# started, within seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
for arg in "$@"; do
    case $arg in
        --quick) quick=1 ;;
        -h | --help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "scripts/test.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

section() { printf '\n===== %s =====\n' "$*"; }

PYTHON=${PYTHON:-python3}
export LBWIRE_CACHE_DIR=${LBWIRE_CACHE_DIR:-$HOME/.cache/lbwire}
cores=$(nproc 2>/dev/null || echo 2)
WORKERS=${LBWIRE_TEST_WORKERS:-$cores}
started=$(date +%s)

# Every process of this run (pytest, its workers, the servers and commands the
# tests start) inherits this mark, so that an interrupted run finds and ends
# them all, whatever process group or session they are in.
export LBWIRE_TEST_RUN="test.sh-$$-$started"

# -- passes, in process groups of their own --------------------------------

set -m  # each background job gets its own process group: the trap signals it
names=() pids=() logs=() begun=() seconds=() results=() counts=()
logdir=$(mktemp -d "${TMPDIR:-/tmp}/lbwire-test-logs-XXXXXX")

# start_pass NAME COMMAND...: run a pytest command in the background, its
# output to a log file (printed when it ends: passes overlap). With
# LBWIRE_TEST_REPORTS=DIR, each pass also writes JUnit XML there (DIR/pass-N.xml:
# every test's time) and each test's CPU seconds (DIR/cpu-N/), to find where a
# pass spends its time and the machine's CPU (scripts/test_times.py).
start_pass() {
    local name=$1
    shift
    local log extra=()
    log="$logdir/$(printf '%02d' "${#names[@]}").log"
    local cpu_dir=''
    if [ -n "${LBWIRE_TEST_REPORTS:-}" ]; then
        cpu_dir="$LBWIRE_TEST_REPORTS/cpu-$(( ${#names[@]} + 1 ))"
        mkdir -p "$cpu_dir"
        extra=("--junitxml=$LBWIRE_TEST_REPORTS/pass-$(( ${#names[@]} + 1 )).xml")
    fi
    LBWIRE_TEST_CPU_DIR=$cpu_dir "$@" "${extra[@]}" </dev/null >"$log" 2>&1 &
    names+=("$name") pids+=($!) logs+=("$log") begun+=("$(date +%s)") seconds+=("") results+=("")
    counts+=("")
    echo "started: $name"
}

# finish_pass INDEX STATUS: print its output, record its time and result.
finish_pass() {
    local i=$1 status=$2
    seconds[i]=$(( $(date +%s) - begun[i] ))
    section "${names[$i]} (${seconds[$i]} s)"
    cat "${logs[$i]}"
    counts[i]=$(grep -E ' in [0-9.]+s' "${logs[$i]}" | tail -n 1 | sed -E 's/^=+ //; s/ in [0-9.]+s.*//' || true)
    case $status in
        0) results[i]=passed ;;
        5) results[i]="FAILED: no tests collected" ;;
        *) results[i]="FAILED (exit $status)" ;;
    esac
}

# queue_pass NAME COMMAND...: a pass that starts once another one has ended,
# so that fewer run at once (with the environment of this shell, not of a
# prefix assignment).
queued_names=() queued=()
queue_pass() {
    queued_names+=("$1")
    shift
    queued+=("$(printf '%q ' "$@")")
}

# wait_passes: finish every pass started, in the order they end, starting a
# queued pass each time one ends.
wait_passes() {
    local i running ended status
    while :; do
        running=()
        for i in "${!pids[@]}"; do
            [ -n "${results[$i]}" ] || running+=("${pids[$i]}")
        done
        [ "${#running[@]}" -gt 0 ] || return 0
        ended='' status=0
        wait -n -p ended "${running[@]}" || status=$?
        for i in "${!pids[@]}"; do
            [ "${pids[$i]}" != "$ended" ] || finish_pass "$i" "$status"
        done
        if [ "${#queued[@]}" -gt 0 ]; then
            eval "start_pass \"\${queued_names[0]}\" ${queued[0]}"
            queued_names=("${queued_names[@]:1}") queued=("${queued[@]:1}")
        fi
    done
}

# The processes carrying this run's mark (but for this shell and grep itself).
marked_pids() {
    env -u LBWIRE_TEST_RUN grep -lzxF "LBWIRE_TEST_RUN=$LBWIRE_TEST_RUN" /proc/[0-9]*/environ 2>/dev/null |
        sed -E 's#^/proc/([0-9]+)/environ$#\1#' | grep -vx "$$" || true
}

# SIGINT/SIGTERM: pass it on to every pass (pytest ends its session and stops
# its servers), give them a few seconds, then kill whatever of the run is left.
interrupted() {
    local signal=$1 pid left
    trap '' INT TERM
    echo >&2
    echo "scripts/test.sh: $signal: ending the test run" >&2
    for pid in "${pids[@]}"; do
        kill "-$signal" -- "-$pid" 2>/dev/null || true
    done
    for _ in $(seq 50); do
        left=$(marked_pids)
        [ -n "$left" ] || break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
    left=$(marked_pids)
    if [ -n "$left" ]; then
        echo "scripts/test.sh: killing what is left:" $left >&2
        # shellcheck disable=SC2086
        kill -KILL $left 2>/dev/null || true
    fi
    rm -rf "$logdir"
    [ "$signal" = INT ] && exit 130
    exit 143
}
trap 'interrupted INT' INT
trap 'interrupted TERM' TERM

summary() {
    local i failed=0
    section "summary ($(( $(date +%s) - started )) s in all)"
    for i in "${!names[@]}"; do
        printf '%-64s %5s s  %s  (%s)\n' "${names[$i]}" "${seconds[$i]}" "${results[$i]}" "${counts[$i]:-no summary line}"
        [ "${results[$i]}" = passed ] || failed=1
    done
    rm -rf "$logdir"
    if [ "$failed" -ne 0 ]; then
        echo "some test runs FAILED (their output is above)"
        exit 1
    fi
    echo "all test runs passed"
}

# -- environments -------------------------------------------------------------

# LBWIRE_NO_INSTALL=1: use .venv and .venv-pypy as they are (no pip runs).
install=1
[ "${LBWIRE_NO_INSTALL:-0}" != "1" ] || install=0

section "CPython environment"
if [ "$install" -eq 1 ]; then
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e '.[test,peers,dev,bench,docs]'
fi
.venv/bin/python --version

pypy=1
[ "${LBWIRE_SKIP_PYPY:-0}" != "1" ] && [ "$quick" -eq 0 ] || pypy=0

# Debian packages: tinyproxy (the HTTP CONNECT proxy of the proxy tests) and,
# for the PyPy pass, pypy3.
missing=()
command -v tinyproxy >/dev/null 2>&1 || [ -x /usr/sbin/tinyproxy ] || missing+=(tinyproxy)
if [ "$pypy" -eq 1 ] && ! command -v pypy3 >/dev/null 2>&1; then
    missing+=(pypy3 pypy3-venv)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    section "Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ "$pypy" -eq 1 ]; then
    section "PyPy environment"
    if [ "$install" -eq 1 ]; then
        [ -x .venv-pypy/bin/python ] || pypy3 -m venv .venv-pypy
        .venv-pypy/bin/python -m pip install --quiet --upgrade pip
        .venv-pypy/bin/python -m pip install --quiet -e '.[test]'
    fi
    .venv-pypy/bin/python --version
fi

section "Liftbridge servers"
# LBWIRE_SERVER picks the generation of every server the suite starts.
export LBWIRE_SERVER=v1.9.0
if [ -z "${LIFTBRIDGE_BIN:-}" ]; then
    LIFTBRIDGE_BIN=$(.venv/bin/python -m lbwire.testing --install --server v1.9.0)
fi
export LIFTBRIDGE_BIN
echo "v1.9.0: $LIFTBRIDGE_BIN ($("$LIFTBRIDGE_BIN" --version 2>&1 | head -n 1))"
if [ "$quick" -eq 0 ]; then
    NEWEST_BIN=$(.venv/bin/python -m lbwire.testing --install --server newest)
    echo "newest: $NEWEST_BIN ($("$NEWEST_BIN" --version 2>&1 | head -n 1))"
fi

# -- the passes -----------------------------------------------------------------

pytest_cpython=(.venv/bin/python -m pytest -q -p no:cacheprovider)

if [ "$quick" -eq 1 ]; then
    section "quick: the tests that need no server, and a smoke test against v1.9.0"
    # But the wheel, venv, docs-site and benchmark builds, which take minutes.
    start_pass "CPython, tests needing no server" \
        "${pytest_cpython[@]}" -n "$WORKERS" --dist loadfile -m "not server and not slow" \
        --ignore tests/test_packaging.py --ignore tests/test_docs.py \
        --ignore tests/test_benchmarks.py
    start_pass "CPython, smoke test against Liftbridge v1.9.0" \
        "${pytest_cpython[@]}" -m smoke
    wait_passes
    summary
    exit 0
fi

# Three passes at a time (1, 3 and 4 first; 5 and 2 queued, each starting when
# one ends). With four at once the load average reached 7 on 2 cores and timing
# tests failed; that was before the shared servers dropped each module's
# streams, when idle servers took a quarter of the CPU. Each hands whole files
# to its workers (module-scoped servers start once); tests/conftest.py puts
# the longest files first.
section "tests: five passes, three at a time"

start_pass "1. CPython, upb protobuf, v1.9.0 (all tests but slow ones)" \
    "${pytest_cpython[@]}" -n "$WORKERS" --dist loadfile -m "not slow"

# Passes 3 and 4 prove the interpreter and the server generation; what the
# backend changes is proven by pass 1, so they run trio only where the backend
# meets what they prove (PyPy: the transport's I/O; see the README's matrix).
if [ "$pypy" -eq 1 ]; then
    LBWIRE_TEST_TRIO_IN=tests/transport,tests/tls \
    start_pass "3. PyPy, v1.9.0 (all tests but slow ones)" \
        .venv-pypy/bin/python -m pytest -q -p no:cacheprovider -n "$WORKERS" --dist loadfile \
        -m "not slow and not one_interpreter"
fi

# The layers that talk to the server (client, transport, TLS, clusters, the
# activity stream, lbwire.testing); the CLI, the blocking client,
# OpenTelemetry, the docs and gufo compatibility sit on top of them. Trio only
# where an issue's criterion names both backends on both servers: the table's
# two counting programs and the killed reader.
# Half the workers: it runs beside the two longest passes from the start.
start_pass "4. CPython, the newest Liftbridge (server tests but slow ones)" \
    env LBWIRE_SERVER=newest LIFTBRIDGE_BIN="$NEWEST_BIN" \
    LBWIRE_TEST_TRIO_IN=tests/client/test_table.py,tests/client/test_reader_killed.py \
    "${pytest_cpython[@]}" -n "$(( (WORKERS + 1) / 2 ))" --dist loadfile \
    -m "server and not slow" \
    tests/client tests/transport tests/tls tests/cluster tests/activity \
    tests/test_server_generations.py tests/test_testing.py

# The slow tests (memory bounds held for minutes, soaks, scale runs, wheel and
# docs builds): a pass of their own. Test by test over the workers, one more
# than the others get: the two 2-minute frozen-broker tests (marker
# `minutes`) mostly wait. They come first, and loadgroup hands out one test
# per worker at the start (load hands out two, which put both on one worker
# in ci23: 325 s instead of 171-197).
queue_pass "5. CPython, upb protobuf, v1.9.0 (the slow tests)" \
    "${pytest_cpython[@]}" -n "$(( WORKERS + 1 ))" --dist loadgroup -m slow

# lbwire never imports protobuf: only the tests that compare with protobuf
# (tests/wire) or run gufo-liftbridge on it (tests/compat) can differ here.
queue_pass "2. CPython, pure-Python protobuf (tests/wire, tests/compat)" \
    env PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python \
    "${pytest_cpython[@]}" -n 2 --dist loadfile -m "not slow" tests/wire tests/compat

wait_passes
summary
