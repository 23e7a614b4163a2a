"""The benchmark suite runs end to end in --quick mode and reports in the agreed shape.

No test here asserts a speed: the numbers of a quick run on a shared machine
mean nothing; the full run (`python -m benchmarks`) is for reading.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks._common import pypy_python

pytestmark = pytest.mark.one_interpreter

ROOT = Path(__file__).resolve().parent.parent
try:
    GUFO_INSTALLED = importlib.util.find_spec("gufo.liftbridge") is not None
except ImportError:  # no `gufo` namespace at all
    GUFO_INSTALLED = False
# The agreed keys, spelled out here rather than read from benchmarks._common,
# so that renaming one there breaks this test.
LBWIRE_KEYS = {"lbwire-asyncio", "lbwire-uvloop", "lbwire-trio", "lbwire-pypy"}
CLIENTS = LBWIRE_KEYS | {"gufo-grpcio", "go-liftbridge"}
SCENARIOS = {
    "subscribe_100B",
    "subscribe_batches_100B",
    "subscribe_stream_16p",
    "subscribe_stream_16p_iterate",
    "subscribe_1KiB",
    "publish_unacked",
    "publish_acked",
    "publish_acked_p99_ms",
    "publish_pipelined",
    "publish_batch",
    "publish_fire_and_forget",
    "publish_settled",
    "table_put",
    "table_get",
    "cursor_roundtrip",
    "first_message_ms",
    "first_message_warm_ms",
    "import_ms",
    "subscribe_peak_rss_mb",
}


#: The clients of the every-scenario run. lbwire-uvloop and lbwire-pypy run the
#: same worker as lbwire-asyncio on another loop or interpreter: two scenarios
#: of theirs (test_the_uvloop_and_pypy_clients_run_the_same_worker) show that.
EVERY_SCENARIO_CLIENTS = "lbwire-asyncio,lbwire-trio,gufo-grpcio,go-liftbridge"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench")
    # Generous bound: the first run may build the Go client (about a minute).
    stdout = quick("benchmarks", out, "--clients", EVERY_SCENARIO_CLIENTS, timeout=900)
    return json.loads((out / "latest.json").read_text()), stdout


def quick(module: str, out: Path, *args: str, timeout: float) -> str:
    """Run `python -m MODULE --quick ARGS --out OUT`; its output."""
    return run_module(module, "--quick", *args, "--out", str(out), timeout=timeout)


def run_module(*args: str, timeout: float) -> str:
    """Run `python -m ARGS` in the repository; its output (it must succeed)."""
    done = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.server
def test_quick_run_writes_json_of_the_agreed_shape(quick_run: tuple[dict, str]) -> None:
    report, _ = quick_run
    for key in ("server", "python", "machine"):
        assert isinstance(report[key], str)
        assert report[key]
    results = report["results"]
    assert isinstance(results, dict)
    assert set(results) <= SCENARIOS
    for scenario, per_client in results.items():
        assert set(per_client) <= CLIENTS, scenario
        for client, entry in per_client.items():
            assert isinstance(entry["value"], (int, float)), (scenario, client)
            assert entry["value"] > 0, (scenario, client)
            assert isinstance(entry["unit"], str), (scenario, client)
            assert entry["unit"]
            assert isinstance(entry["spread"], (int, float)), (scenario, client)
            assert entry["spread"] >= 0, (scenario, client)


@pytest.mark.server
def test_quick_run_measures_every_scenario_for_lbwire_and_gufo(
    quick_run: tuple[dict, str],
) -> None:
    results = quick_run[0]["results"]
    assert set(results) == SCENARIOS
    for scenario, per_client in results.items():
        assert "lbwire-asyncio" in per_client, scenario
        if scenario != "import_ms":  # one package: measured once, as lbwire-asyncio
            assert "lbwire-trio" in per_client, scenario
        if GUFO_INSTALLED and scenario not in (
            "publish_acked",
            "publish_acked_p99_ms",
            "publish_fire_and_forget",
            "publish_settled",
            "table_put",
            "table_get",
            "subscribe_batches_100B",
            "subscribe_stream_16p_iterate",
        ):
            assert "gufo-grpcio" in per_client, scenario
    if not GUFO_INSTALLED:
        pytest.skip(
            "lbwire checked; gufo-liftbridge is not installed (needs grpcio: no PyPy wheels)"
        )


@pytest.mark.server
def test_quick_run_reports_the_lbwire_warm_up_apart(quick_run: tuple[dict, str]) -> None:
    # Publishes and round trips are timed after a warm-up (PyPy's JIT), whose
    # rates are kept apart; reads have none.
    results = quick_run[0]["results"]
    for scenario in ("publish_acked", "publish_pipelined", "cursor_roundtrip"):
        warmup = results[scenario]["lbwire-asyncio"]["warmup"]
        assert len(warmup) == 1, scenario
        assert warmup[0] > 0, scenario
    assert "warmup" not in results["subscribe_100B"]["lbwire-asyncio"]


def test_quick_run_prints_table_and_targets(quick_run: tuple[dict, str]) -> None:
    _, stdout = quick_run
    assert "scenario (unit)" in stdout
    assert "Targets" in stdout
    assert "latest.json" in stdout


@pytest.mark.server
def test_the_uvloop_and_pypy_clients_run_the_same_worker(tmp_path: Path) -> None:
    quick(
        "benchmarks",
        tmp_path,
        "--clients",
        "lbwire-uvloop,lbwire-pypy",
        "--scenarios",
        "subscribe_100B,publish_pipelined",
        timeout=600,
    )
    report = json.loads((tmp_path / "latest.json").read_text())
    expected = {"lbwire-uvloop"}
    if pypy_python(str(ROOT)) is not None:
        expected.add("lbwire-pypy")
    else:
        assert "lbwire-pypy" in report["skipped_clients"], report
    for scenario in ("subscribe_100B", "publish_pipelined"):
        measured = report["results"][scenario]
        assert set(measured) == expected, scenario
        assert all(entry["value"] > 0 for entry in measured.values()), scenario


def test_lbwire_worker_never_imports_grpcio() -> None:
    code = (
        "import sys, benchmarks.run, benchmarks.workers.lbwire_worker, lbwire.client; "
        "assert 'grpc' not in sys.modules and 'gufo' not in sys.modules, 'grpc imported'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.server
@pytest.mark.slow
def test_quick_scale_run_draws_every_curve_for_lbwire(tmp_path: Path) -> None:
    quick("benchmarks.scale", tmp_path, "--clients", "lbwire-asyncio", timeout=600)
    report = json.loads((tmp_path / "scale.json").read_text())
    assert set(report["curves"]) == {"partitions", "size", "in_flight"}
    for curve, per_client in report["curves"].items():
        points = per_client["lbwire-asyncio"]
        assert [p["point"] for p in points] == sorted(p["point"] for p in points), curve
        for point in points:
            assert point["msgs_per_s"] > 0, (curve, point)
            assert point["cpu_us_per_msg"] >= 0, (curve, point)
    assert not report["notes"], report["notes"]


@pytest.mark.server
def test_quick_batches_run_compares_both_readers(tmp_path: Path) -> None:
    quick("benchmarks.batches", tmp_path, timeout=300)
    report = json.loads((tmp_path / "batches.json").read_text())
    for measurement in ("in_memory", "server"):
        assert set(report[measurement]) == {"one_at_a_time", "batches"}, measurement
        for reader, values in report[measurement].items():
            assert values["cpu_us_per_msg"] > 0, (measurement, reader)
    for reader, values in report["server"].items():
        assert values["receive_us_per_msg"] > 0, reader
        assert values["decode_us_per_msg"] > 0, reader


@pytest.mark.server
def test_quick_publish_cpu_run_measures_both_ways() -> None:
    report = json.loads(run_module("benchmarks.publish_cpu", "--quick", timeout=300))
    assert set(report) == {"pipelined", "fire_and_forget"}
    for way, values in report.items():
        assert values["cpu_us_per_publish"] > 0, way
        assert values["publishes_per_s"] > 0, way
    one = json.loads(
        run_module("benchmarks.publish_cpu", "--quick", "--way", "pipelined", timeout=300)
    )
    assert set(one) == {"pipelined"}


@pytest.mark.server
def test_quick_publish_ops_run_counts_the_publishing_functions() -> None:
    report = json.loads(
        run_module("benchmarks.publish_ops", "--quick", "--way", "fire_and_forget", timeout=300)
    )
    assert report["bytecodes_per_publish"] > 0
    # The publishing path itself is among the counted functions.
    assert any(name.endswith(":publish_async") for name in report["functions"])
    assert sum(report["functions"].values()) <= report["bytecodes_per_publish"]
