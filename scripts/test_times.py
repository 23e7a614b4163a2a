"""Where a test pass spends its time: the test files that take longest.

    LBWIRE_TEST_REPORTS=/tmp/reports bash scripts/test.sh
    python scripts/test_times.py /tmp/reports/pass-*.xml [--top 15]

Reads the JUnit XML files ``scripts/test.sh`` writes with
``LBWIRE_TEST_REPORTS`` set and prints, per pass, its test count, the sum of
its test times, and its longest files (xdist hands whole files to a worker,
so one long file bounds the pass from below). Where the CPU log of the pass
is beside its report (DIR/cpu-N/ for DIR/pass-N.xml), each file's CPU seconds
(of the test processes and the servers and commands they reaped) are printed
too, and the files are ranked by them: the passes overlap on a few cores, so
CPU, more than waiting, is what stretches a run.
"""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path


def file_times(report: Path) -> dict[str, tuple[int, float]]:
    """Test count and summed seconds per test file of one JUnit report."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for case in ET.parse(report).getroot().iter("testcase"):
        # classname is the dotted module path, then any class names.
        parts = case.get("classname", "?").split(".")
        module = "/".join(p for p in parts if not p[:1].isupper()) + ".py"
        entry = totals[module]
        entry[0] += 1
        entry[1] += float(case.get("time", 0.0))
    return {name: (int(count), seconds) for name, (count, seconds) in totals.items()}


def file_cpu(report: Path) -> dict[str, float]:
    """CPU seconds per test file from the CPU log beside a report, if any."""
    totals: dict[str, float] = defaultdict(float)
    cpu_dir = report.with_name(report.stem.replace("pass-", "cpu-"))
    for log in sorted(cpu_dir.glob("cpu-*.tsv")) if cpu_dir.is_dir() else []:
        for line in log.read_text(encoding="utf-8").splitlines():
            nodeid, _, seconds = line.rpartition("\t")
            totals[nodeid.split("::")[0]] += float(seconds)
    return dict(totals)


def main() -> None:
    """Print the report of each file named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    for report in args.reports:
        times = file_times(report)
        tests = sum(count for count, _ in times.values())
        total = sum(seconds for _, seconds in times.values())
        cpu = file_cpu(report)
        line = f"== {report.name}: {tests} tests, {total:.0f} s of test time"
        if cpu:
            line += f", {sum(cpu.values()):.0f} CPU s"
        print(line)
        ranked = sorted(
            times.items(), key=lambda item: (cpu.get(item[0], 0.0), item[1][1]), reverse=True
        )
        for name, (count, seconds) in ranked[: args.top]:
            cpu_text = f"  {cpu[name]:8.1f} CPU s" if name in cpu else ""
            print(f"{seconds:8.1f} s{cpu_text}  {count:5d} tests  {name}")


if __name__ == "__main__":
    main()
