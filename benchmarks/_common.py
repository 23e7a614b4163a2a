"""What the orchestrator and every worker share: jobs, results, statistics.

Only the standard library is imported here: a worker process must load
nothing but its own client (so gufo's grpcio never lands in lbwire's process).

A job is a JSON object handed to a worker on its command line::

    {"scenario": "subscribe", "broker": "127.0.0.1:9292", "stream": "...",
     "count": 200000, "size": 100, "reps": 1, "in_flight": 1000,
     "checkpoints": 10, "cursor_id": "...", "timeout": 300}

A worker prints one JSON line as the last line of its standard output::

    {"samples": [48123.4], "unit": "msgs/s", "extra": {"p99_ms": [1.9]}}

or ``{"error": "..."}``, or ``{"skipped": "why"}`` for a scenario its client
cannot do.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
from typing import Any, Dict, List, Optional, Sequence

#: Client keys, in the order tables and charts show them.
CLIENTS = (
    "lbwire-asyncio",
    "lbwire-uvloop",
    "lbwire-trio",
    "lbwire-pypy",
    "gufo-grpcio",
    "go-liftbridge",
)
#: lbwire on CPython, by event loop.
LBWIRE_CLIENTS = CLIENTS[:3]
#: lbwire on asyncio on PyPy (the interpreter `pypy_python` finds).
PYPY = "lbwire-pypy"
#: The baseline of the ratios in the chart and the targets.
BASELINE = "gufo-grpcio"
GO = "go-liftbridge"

#: Scenario keys, in report order, with their unit, whether higher is better,
#: the label tables show (the README's and the documentation's) and, where
#: False, whether they leave out the spread of the rounds.
SCENARIOS: Dict[str, Dict[str, Any]] = {
    "subscribe_100B": {"unit": "msgs/s", "higher": True, "label": "subscribe 100 B"},
    "subscribe_batches_100B": {
        "unit": "msgs/s",
        "higher": True,
        "label": "subscribe 100 B, batches of 500",
    },
    "subscribe_stream_16p": {
        "unit": "msgs/s",
        "higher": True,
        "label": "read a 16-partition stream, batches",
    },
    "subscribe_stream_16p_iterate": {
        "unit": "msgs/s",
        "higher": True,
        "label": "read a 16-partition stream, one message at a time",
    },
    "subscribe_1KiB": {"unit": "msgs/s", "higher": True, "label": "subscribe 1 KiB"},
    "publish_unacked": {
        "unit": "msgs/s",
        "higher": True,
        "label": "sequential publish, unacked",
    },
    "publish_acked": {"unit": "msgs/s", "higher": True, "label": "sequential publish, acked"},
    # Tables show the median round's p99 alone: the range of a tail latency
    # over a few rounds says little about it.
    "publish_acked_p99_ms": {
        "unit": "ms",
        "higher": False,
        "label": "acked publish p99",
        "spread": False,
    },
    "publish_pipelined": {
        "unit": "msgs/s",
        "higher": True,
        "label": "pipelined publish, 1,000 in flight",
    },
    "publish_batch": {
        "unit": "msgs/s",
        "higher": True,
        "label": "batch publish, batches of 1,000",
    },
    "publish_fire_and_forget": {
        "unit": "msgs/s",
        "higher": True,
        "label": "fire-and-forget publish",
    },
    "publish_settled": {
        "unit": "msgs/s",
        "higher": True,
        "label": "settled publish, concurrency control",
    },
    "table_put": {"unit": "ops/s", "higher": True, "label": "table put, compare-and-set"},
    "table_get": {"unit": "ops/s", "higher": True, "label": "table get from the view"},
    "cursor_roundtrip": {"unit": "pairs/s", "higher": True, "label": "cursor set + get"},
    "first_message_ms": {"unit": "ms", "higher": False, "label": "connect to first message"},
    "first_message_warm_ms": {
        "unit": "ms",
        "higher": False,
        "label": "connect to first message, warm",
    },
    "import_ms": {"unit": "ms", "higher": False, "label": "import of the client package"},
    "subscribe_peak_rss_mb": {
        "unit": "MB",
        "higher": False,
        "label": "peak RSS subscribing to 1,000,000 messages",
    },
}
#: A few words a table adds to a client's cell in a scenario: after its
#: figure, or alone where it has none (where that is no surprise to explain).
CELL_NOTES: Dict[str, Dict[str, str]] = {
    "subscribe_stream_16p": {
        BASELINE: "a task per partition",
        GO: "a goroutine per partition",
    },
    "publish_unacked": {GO: "queues only"},
    "publish_acked": {BASELINE: "cannot wait for acks"},
    "publish_pipelined": {BASELINE: "`publish_bulk`"},
    "publish_batch": {BASELINE: "`publish_bulk`", GO: "`PublishAsync`, 1,000 in flight"},
    "publish_fire_and_forget": {GO: "`Publish`, AckPolicyNone: queues only"},
}


def summarize(samples: Sequence[float], unit: str) -> Dict[str, Any]:
    """Median and spread (max - min) of a scenario's samples."""
    values = [float(s) for s in samples]
    return {
        "value": round(statistics.median(values), 3),
        "unit": unit,
        "spread": round(max(values) - min(values), 3),
        "samples": [round(v, 3) for v in values],
    }


def percentile(values: Sequence[float], pct: float) -> float:
    """The `pct` percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, int(len(ordered) * pct / 100.0)))
    return ordered[rank]


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (VmHWM, else ru_maxrss)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return maxrss / (1024.0 * 1024.0) if sys.platform == "darwin" else maxrss / 1024.0


def read_job(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """The job a worker was started with (its one argument, JSON)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m benchmarks.workers.<client> JOB_JSON")
    job: Dict[str, Any] = json.loads(args[0])
    return job


def emit(result: Dict[str, Any]) -> None:
    """Print a worker's result as its last line of output."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def payload(size: int) -> bytes:
    """A message value of `size` bytes (the same in every client)."""
    pattern = bytes(range(97, 123))  # a..z, as the Go client uses
    return (pattern * (size // len(pattern) + 1))[:size]


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false", "no")


def pypy_python(root: str) -> Optional[str]:
    """The PyPy interpreter for `lbwire-pypy`, or None when there is none.

    `$LBWIRE_BENCH_PYPY`, else the `.venv-pypy` environment the README's test
    command creates in the repository (it has lbwire's dependencies).
    """
    configured = os.environ.get("LBWIRE_BENCH_PYPY")
    if configured:
        return configured
    candidate = os.path.join(root, ".venv-pypy", "bin", "python")
    return candidate if os.access(candidate, os.X_OK) else None
