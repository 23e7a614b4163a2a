"""Run lbwire's comparison benchmarks: one command, one server, every client.

    python -m benchmarks [--quick] [--broker HOST:PORT [--nats HOST:PORT]]
                         [--clients a,b] [--scenarios x,y] [--out DIR]

Starts a throwaway Liftbridge server on 127.0.0.1 (lbwire.testing) unless
`--broker` names one, fills the streams the subscribe scenarios read, then
runs every scenario for every client, each run in a subprocess of its own:
lbwire on asyncio, asyncio+uvloop and trio, gufo-liftbridge (grpcio) and the
Go reference client (built from benchmarks/go with go-liftbridge v2; skipped
with the reason printed when Go is missing or the build fails). Rounds of a
scenario alternate between the clients, so load from other programs on the
machine spreads over all of them.

Writes DIR/latest.json (default benchmarks/results/) and, with matplotlib,
DIR/latest.png; prints progress, a table, ratios and the targets.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

if __package__ in (None, ""):  # `python benchmarks/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.run import main

    sys.exit(main())

from ._common import (
    BASELINE,
    CLIENTS,
    GO,
    LBWIRE_CLIENTS,
    PYPY,
    SCENARIOS,
    pypy_python,
    summarize,
)
from .report import chart, check_targets, print_report

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results"

STREAM_100B = "lbbench-100B"
STREAM_1KIB = "lbbench-1KiB"
STREAM_PUBLISH = "lbbench-publish"
STREAM_16P = "lbbench-16p"
#: Partitions of STREAM_16P.
PARTITIONS_16P = 16
#: The batches of the batch scenarios: batches(500, 0.05).
BATCH = {"max_count": 500, "max_wait": 0.05}
#: With optimistic concurrency control, which settled publishing needs.
STREAM_SETTLED = "lbbench-settled"
#: A key-value table's stream (`client.table` creates it).
STREAM_TABLE = "lbbench-table"
#: Scenarios a client offers no equivalent of: noted, not run.
NOT_OFFERED: Dict[str, Dict[str, str]] = {
    "publish_settled": {
        GO: "n/a: go-liftbridge does not settle an ambiguous publish",
    },
    "table_put": {GO: "n/a: go-liftbridge has no key-value table"},
    "table_get": {GO: "n/a: go-liftbridge has no key-value table"},
}


# Sizes of each mode. Full: about 6-8 minutes on 2 cores; quick: under a minute.
FULL: Dict[str, Any] = {
    "subscribe_count": 200_000,
    "rss_count": 1_000_000,
    "unacked_count": 3_000,
    "acked_count": 1_000,
    "pipelined_count": 10_000,
    "cursor_count": 500,
    "table_get_count": 200_000,
    "rounds": 3,
    "first_message_rounds": 5,
    "import_rounds": 7,
    "rss_rounds": 1,
    "timeout": 240.0,
    "rss_timeout": 400.0,
}
QUICK: Dict[str, Any] = {
    "subscribe_count": 5_000,
    "rss_count": 20_000,
    "unacked_count": 200,
    "acked_count": 100,
    "pipelined_count": 2_000,
    "cursor_count": 40,
    "table_get_count": 5_000,
    "rounds": 1,
    "first_message_rounds": 1,
    "import_rounds": 2,
    "rss_rounds": 1,
    "timeout": 45.0,
    "rss_timeout": 45.0,
}


def log(text: str) -> None:
    print(text, flush=True)


# --------------------------------------------------------------------------- plan


#: Calls an lbwire worker makes, untimed, before the timed ones, in the
#: scenarios made of publishes and round trips: about what PyPy's JIT needs
#: to compile the path (acked publishing reached its warm rate after about
#: 8,000 publishes, pipelined after 20,000-30,000; see the README). The
#: warm-up's rates are reported apart, as each entry's `warmup`.
WARMUP_CALLS = {
    "publish_unacked": 8_000,
    "publish_acked": 8_000,
    "publish_settled": 8_000,
    "table_put": 8_000,
    "cursor_roundtrip": 4_000,  # pairs
    "publish_pipelined": 30_000,
    "publish_batch": 30_000,
    "publish_fire_and_forget": 30_000,
}


def plan(sizes: Dict[str, Any]) -> List[Tuple[str, Dict[str, Any], int]]:
    """(scenario key, job template, rounds) for each scenario but import_ms."""
    jobs = _plan(sizes)
    for key, template, _ in jobs:
        calls = WARMUP_CALLS.get(key)
        if calls is not None:
            # (A quick run warms once: the path is exercised, not warmed.)
            count = max(1, int(template["count"]))
            template["warmup_reps"] = 1 if sizes is QUICK else -(-calls // count)
    return jobs


def _plan(sizes: Dict[str, Any]) -> List[Tuple[str, Dict[str, Any], int]]:
    rounds = sizes["rounds"]
    timeout = sizes["timeout"]
    return [
        (
            "subscribe_100B",
            {
                "scenario": "subscribe",
                "stream": STREAM_100B,
                "size": 100,
                "count": sizes["subscribe_count"],
                "timeout": timeout,
            },
            rounds,
        ),
        (
            "subscribe_batches_100B",
            {
                "scenario": "subscribe_batches",
                "stream": STREAM_100B,
                "size": 100,
                "count": sizes["subscribe_count"],
                "timeout": timeout,
                **BATCH,
            },
            rounds,
        ),
        (
            "subscribe_stream_16p",
            {
                "scenario": "subscribe_stream",
                "stream": STREAM_16P,
                "size": 100,
                "partitions": PARTITIONS_16P,
                "count": sizes["subscribe_count"] // PARTITIONS_16P,
                "batches": True,
                "timeout": timeout,
                **BATCH,
            },
            rounds,
        ),
        (
            "subscribe_stream_16p_iterate",
            {
                "scenario": "subscribe_stream",
                "stream": STREAM_16P,
                "size": 100,
                "partitions": PARTITIONS_16P,
                "count": sizes["subscribe_count"] // PARTITIONS_16P,
                "batches": False,
                "timeout": timeout,
            },
            rounds,
        ),
        (
            "subscribe_1KiB",
            {
                "scenario": "subscribe",
                "stream": STREAM_1KIB,
                "size": 1024,
                "count": sizes["subscribe_count"],
                "timeout": timeout,
            },
            rounds,
        ),
        (
            "publish_unacked",
            {
                "scenario": "publish_unacked",
                "stream": STREAM_PUBLISH,
                "size": 100,
                "count": sizes["unacked_count"],
                "timeout": timeout,
            },
            rounds,
        ),
        (
            "publish_acked",
            {
                "scenario": "publish_acked",
                "stream": STREAM_PUBLISH,
                "size": 100,
                "count": sizes["acked_count"],
                "timeout": timeout,
            },
            rounds,
        ),
        (
            "publish_pipelined",
            {
                "scenario": "publish_pipelined",
                "stream": STREAM_PUBLISH,
                "size": 100,
                "count": sizes["pipelined_count"],
                "in_flight": 1000,
                "timeout": timeout,
            },
            rounds,
        ),
        (
            "publish_batch",
            {
                "scenario": "publish_batch",
                "stream": STREAM_PUBLISH,
                "size": 100,
                "count": sizes["pipelined_count"],
                "batch": 1000,
                # Go has no batch call: PublishAsync with this many in flight.
                "in_flight": 1000,
                "timeout": timeout,
            },
            rounds,
        ),
        (
            "publish_fire_and_forget",
            {
                "scenario": "publish_fire_and_forget",
                "stream": STREAM_PUBLISH,
                "size": 100,
                "count": sizes["pipelined_count"],
                "timeout": timeout,
            },
            rounds,
        ),
        (
            # Sequential, as settled publishes to one partition take turns.
            "publish_settled",
            {
                "scenario": "publish_settled",
                "stream": STREAM_SETTLED,
                "size": 100,
                "count": sizes["acked_count"],
                "timeout": timeout,
            },
            rounds,
        ),
        (
            # One key, each put a compare-and-set on the revision the last returned.
            "table_put",
            {
                "scenario": "table_put",
                "stream": STREAM_TABLE,
                "size": 100,
                "count": sizes["acked_count"],
                "timeout": timeout,
            },
            rounds,
        ),
        (
            "table_get",
            {
                "scenario": "table_get",
                "stream": STREAM_TABLE,
                "size": 100,
                "count": sizes["table_get_count"],
                "timeout": timeout,
            },
            rounds,
        ),
        (
            "cursor_roundtrip",
            {
                "scenario": "cursor_roundtrip",
                "stream": STREAM_100B,
                "count": sizes["cursor_count"],
                "timeout": timeout,
            },
            rounds,
        ),
        (
            "first_message_ms",
            {"scenario": "first_message", "stream": STREAM_100B, "reps": 1, "timeout": timeout},
            sizes["first_message_rounds"],
        ),
        (
            # The same with a new client in a process that has made one already
            # (imports done, code warm): the first, cold, sample is discarded.
            "first_message_warm_ms",
            {
                "scenario": "first_message",
                "stream": STREAM_100B,
                "reps": 6,
                "discard": 1,
                "timeout": timeout,
            },
            sizes["first_message_rounds"],
        ),
        (
            "subscribe_peak_rss_mb",
            {
                "scenario": "subscribe_rss",
                "stream": STREAM_100B,
                "size": 100,
                "count": sizes["rss_count"],
                "checkpoints": 10,
                "timeout": sizes["rss_timeout"],
            },
            sizes["rss_rounds"],
        ),
    ]


# ------------------------------------------------------------------------ workers


def worker_argv(client: str, job: Dict[str, Any], go_binary: Optional[str]) -> List[str]:
    spec = json.dumps(job)
    if client in LBWIRE_CLIENTS:
        backend = client.split("-", 1)[1]
        return [sys.executable, "-m", "benchmarks.workers.lbwire_worker", backend, spec]
    if client == PYPY:
        pypy = pypy_python(str(ROOT))
        assert pypy is not None  # main() leaves lbwire-pypy out without one
        return [pypy, "-m", "benchmarks.workers.lbwire_worker", "asyncio", spec]
    if client == BASELINE:
        return [sys.executable, "-m", "benchmarks.workers.gufo_worker", spec]
    assert go_binary is not None
    return [go_binary, "-job", spec]


def worker_env() -> Dict[str, str]:
    """The environment of every worker process: imports come from cached bytecode.

    Users import packages compiled at install time; with PYTHONDONTWRITEBYTECODE
    set (some machines do), an edited lbwire module would be compiled again in
    every worker, inside the timed first message.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_worker(argv: List[str], timeout: float) -> Dict[str, Any]:
    """Run one worker process; its result, or an error (timeouts kill it)."""
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=worker_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: killed whole on timeout
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"error": f"killed after {timeout:.0f} s"}
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            try:
                result: Dict[str, Any] = json.loads(line)
            except ValueError:
                break
            if "error" in result and err.strip():
                result["error"] += " | " + " | ".join(err.strip().splitlines()[-3:])
            return result
    tail = " | ".join((out + err).strip().splitlines()[-3:])
    return {"error": f"exit status {proc.returncode}, no result: {tail}"}


def fresh_python(python: str, code: str, *args: str, timeout: float) -> Any:
    """Run `python -c code args...` in the repository: a fresh interpreter (see `worker_env`)."""
    return subprocess.run(
        [python, "-c", code, *args],
        cwd=ROOT,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def measure_imports(
    clients: List[str],
    rounds: int,
    samples: Dict[str, Dict[str, List[float]]],
    notes: Dict[str, Dict[str, str]],
) -> None:
    """import_ms: `import lbwire.client` against `import gufo.liftbridge.client`.

    Each in a fresh interpreter, timed around the import statement alone.
    gufo.liftbridge.client imports asyncio and grpc itself; lbwire.client loads
    no event loop (anyio imports the backend when the loop starts), so the one
    lbwire number stands for all three lbwire clients.
    """
    statements = {
        "lbwire-asyncio": "import lbwire.client",
        PYPY: "import lbwire.client",
        "gufo-grpcio": "import gufo.liftbridge.client",
    }
    interpreters = {PYPY: pypy_python(str(ROOT)) or "pypy3"}
    for client in clients:
        if client in ("lbwire-uvloop", "lbwire-trio"):
            notes.setdefault("import_ms", {})[client] = (
                "same package as lbwire-asyncio: import lbwire.client loads no event loop"
            )
        if client == GO:
            notes.setdefault("import_ms", {})[GO] = "compiled: no import step"
    code = "import time; t = time.perf_counter(); {stmt}; print((time.perf_counter() - t) * 1000.0)"
    timed = [c for c in clients if c in statements]
    for rnd in range(rounds + 1):  # round 0 warms the bytecode caches
        for client in timed:
            python = interpreters.get(client, sys.executable)
            done = fresh_python(python, code.format(stmt=statements[client]), timeout=60)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["?"])[-1]
                notes.setdefault("import_ms", {})[client] = f"skipped: {last}"
                continue
            if rnd > 0:
                samples.setdefault("import_ms", {}).setdefault(client, []).append(
                    float(done.stdout.strip())
                )
    for client, values in samples.get("import_ms", {}).items():
        log(f"  import_ms  {client:<15} {sorted(values)[len(values) // 2]:8.1f} ms")


# -------------------------------------------------------------------------- setup


async def prepare(
    broker: str, nats: Optional[Tuple[str, int]], sizes: Dict[str, Any], scenarios: List[str]
) -> None:
    """Create and fill the streams; wait until the cursors stream is ready."""
    from lbwire.client import LiftbridgeClient

    from .seed import ensure_stream, fill

    async with LiftbridgeClient([broker]) as client:
        need_100 = 0
        if {
            "subscribe_100B",
            "subscribe_batches_100B",
            "first_message_ms",
            "first_message_warm_ms",
        } & set(scenarios):
            need_100 = max(sizes["subscribe_count"], 1)
        if "subscribe_peak_rss_mb" in scenarios:
            need_100 = max(need_100, sizes["rss_count"])
        if "cursor_roundtrip" in scenarios:
            need_100 = max(need_100, 1)
        if need_100:
            await fill(client, STREAM_100B, need_100, 100, nats, log)
        if {"subscribe_stream_16p", "subscribe_stream_16p_iterate"} & set(scenarios):
            each = max(sizes["subscribe_count"] // PARTITIONS_16P, 1)
            for partition in range(PARTITIONS_16P):
                await fill(
                    client,
                    STREAM_16P,
                    each,
                    100,
                    nats,
                    log,
                    partition=partition,
                    partitions=PARTITIONS_16P,
                )
        if "subscribe_1KiB" in scenarios:
            await fill(client, STREAM_1KIB, sizes["subscribe_count"], 1024, nats, log)
        await ensure_stream(client, STREAM_PUBLISH)
        if "publish_settled" in scenarios:
            await ensure_stream(client, STREAM_SETTLED, concurrency_control=True)
        if "cursor_roundtrip" in scenarios:
            await client.wait_for_cursors(timeout=60)


# --------------------------------------------------------------------------- main


def machine_description() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()} "
        f"({platform.machine()})"
    )


def versions() -> Dict[str, str]:
    from importlib import metadata

    found = {}
    for name in ("lbwire", "anyio", "h2", "trio", "uvloop", "gufo_liftbridge", "grpcio"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Compare lbwire, gufo-liftbridge and go-liftbridge on one Liftbridge server.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, one round: a smoke run of every scenario (< 60 s)",
    )
    parser.add_argument(
        "--broker", help="use this Liftbridge server (HOST:PORT) instead of a throwaway one"
    )
    parser.add_argument(
        "--nats", help="with --broker: its NATS address (HOST:PORT), to fill streams fast"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"directory for latest.json and latest.png (default {DEFAULT_OUT})",
    )
    parser.add_argument(
        "--server",
        choices=("v1.9.0", "newest"),
        default=None,
        help="which Liftbridge to start: the pinned v1.9.0 (default, or $LBWIRE_SERVER) or "
        "the newest, built from its source tarball (lbwire.testing)",
    )
    parser.add_argument("--clients", help=f"comma-separated subset of {','.join(CLIENTS)}")
    parser.add_argument("--scenarios", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    return parser.parse_args(argv)


def _subset(text: Optional[str], allowed: Tuple[str, ...], what: str) -> List[str]:
    if not text:
        return list(allowed)
    chosen = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in allowed]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return [item for item in allowed if item in chosen]


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    clients = _subset(args.clients, CLIENTS, "clients")
    scenarios = _subset(args.scenarios, tuple(SCENARIOS), "scenarios")
    if "publish_acked_p99_ms" in scenarios and "publish_acked" not in scenarios:
        scenarios.append("publish_acked")
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    import anyio

    from lbwire.testing import (
        NEWEST_COMMIT,
        LiftbridgeServer,
        binary_version,
        find_liftbridge,
    )

    from . import go_client

    samples: Dict[str, Dict[str, List[float]]] = {}
    extras: Dict[str, Dict[str, Dict[str, Any]]] = {}
    notes: Dict[str, Dict[str, str]] = {}
    for key, by_client in NOT_OFFERED.items():
        notes[key] = {c: text for c, text in by_client.items() if c in clients}
    client_notes: Dict[str, str] = {}

    go_binary: Optional[str] = None
    if GO in clients:
        log("Building the Go reference client (benchmarks/go; cached after the first build)...")
        go_binary, reason = go_client.build()
        if go_binary is None:
            log(f"  skipping {GO}: {reason}")
            client_notes[GO] = reason
            clients.remove(GO)
        else:
            log(f"  {go_binary}")

    if PYPY in clients and pypy_python(str(ROOT)) is None:
        reason = (
            "no PyPy environment: set LBWIRE_BENCH_PYPY, or run the README's test "
            "command once (it creates .venv-pypy)"
        )
        log(f"  skipping {PYPY}: {reason}")
        client_notes[PYPY] = reason
        clients.remove(PYPY)

    # As pip does at install time: no worker compiles lbwire inside a timed step.
    pythons = [sys.executable, pypy_python(str(ROOT)) if PYPY in clients else None]
    for python in filter(None, pythons):
        subprocess.run(
            [python, "-m", "compileall", "-q", str(ROOT / "lbwire")],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    server: Optional[LiftbridgeServer] = None
    try:
        if args.broker:
            broker = args.broker
            nats = None
            if args.nats:
                host, _, port = args.nats.rpartition(":")
                nats = (host, int(port))
            server_text = f"external broker {broker}"
        else:
            binary = find_liftbridge(version=args.server)
            log(f"Starting a throwaway Liftbridge {binary_version(binary)} on 127.0.0.1...")
            # lbwire.testing writes `telemetry: enabled: false` for builds after v1.9.0.
            server = LiftbridgeServer(binary=binary, version=args.server)
            server.start()
            broker = server.broker
            nats = (server.host, server.nats_port)
            reported = binary_version(binary)
            if reported == "dev":  # the newest reports no version of its own
                reported = f"main {NEWEST_COMMIT} (newest)"
            server_text = f"Liftbridge {reported} (throwaway, {broker})"
            log(f"  {broker} (log {server.log_path})")
        log("Filling the streams...")
        anyio.run(prepare, broker, nats, sizes, scenarios)

        if "import_ms" in scenarios:
            log("import_ms")
            measure_imports(clients, sizes["import_rounds"], samples, notes)

        for key, template, rounds in plan(sizes):
            if key not in scenarios:
                continue
            log(f"{key}  ({rounds} round{'s' if rounds > 1 else ''})")
            for rnd in range(rounds):
                for client in clients:
                    if key in notes and client in notes[key]:
                        continue  # skipped or failed in an earlier round
                    job = dict(template, broker=broker, cursor_id=f"lbbench-{client}")
                    t0 = time.perf_counter()
                    result = run_worker(
                        worker_argv(client, job, go_binary), float(job["timeout"]) + 20.0
                    )
                    took = time.perf_counter() - t0
                    if "skipped" in result or "error" in result:
                        status = "skipped" if "skipped" in result else "error"
                        text = f"{status}: {result.get('skipped') or result.get('error')}"
                        notes.setdefault(key, {})[client] = text
                        if key == "publish_acked":
                            notes.setdefault("publish_acked_p99_ms", {})[client] = text
                        log(f"  [{rnd + 1}/{rounds}] {client:<15} {text[:200]}")
                        continue
                    values = result["samples"][int(job.get("discard", 0)) :]
                    samples.setdefault(key, {}).setdefault(client, []).extend(values)
                    extra = result.get("extra") or {}
                    if extra.get("p99_ms"):
                        samples.setdefault("publish_acked_p99_ms", {}).setdefault(
                            client, []
                        ).extend(extra["p99_ms"])
                    if extra.get("cpu_us_per_msg"):
                        extras.setdefault(key, {}).setdefault(client, {}).setdefault(
                            "cpu_us_per_msg", []
                        ).extend(extra["cpu_us_per_msg"][int(job.get("discard", 0)) :])
                    if extra.get("warmup"):
                        extras.setdefault(key, {}).setdefault(client, {}).setdefault(
                            "warmup", []
                        ).extend(extra["warmup"])
                    if extra.get("checkpoints_mb"):
                        extras.setdefault(key, {}).setdefault(client, {})["checkpoints_mb"] = extra[
                            "checkpoints_mb"
                        ]
                    shown = ", ".join(f"{v:,.1f}" for v in values)
                    p99 = f"  p99 {extra['p99_ms'][-1]:.2f} ms" if extra.get("p99_ms") else ""
                    log(
                        f"  [{rnd + 1}/{rounds}] {client:<15} {shown} {result['unit']}{p99}"
                        f"  ({took:.1f} s)"
                    )
    finally:
        if server is not None:
            server.close()

    results: Dict[str, Dict[str, Any]] = {}
    for key in SCENARIOS:
        if key not in samples:
            continue
        results[key] = {}
        for client in CLIENTS:
            if client in samples[key]:
                entry = summarize(samples[key][client], SCENARIOS[key]["unit"])
                entry.update(extras.get(key, {}).get(client, {}))
                results[key][client] = entry
    report: Dict[str, Any] = {
        "server": server_text,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "machine": machine_description(),
        "mode": "quick" if args.quick else "full",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "duration_s": round(time.perf_counter() - started, 1),
        "load_average": {
            "before": load_before,
            "after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
        "versions": versions(),
        "results": results,
        "notes": notes,
        "skipped_clients": client_notes,
    }
    report["targets"] = check_targets(results)
    print_report(report)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    log(f"\nWrote {out / 'latest.json'}")
    png, why_not = chart(report, out / "latest.png")
    log(f"Wrote {png}" if png else f"No chart: {why_not}")
    log(f"Done in {report['duration_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
