"""Hypothesis example counts per interpreter."""

from __future__ import annotations

import platform

#: PyPy runs Hypothesis's generation several times slower than CPython (its JIT
#: warms per test), and the wire tests are its test pass's longest files. PyPy
#: runs a third of the examples; the CPython passes run them all, and a
#: difference PyPy could make (its own int and bytes code) shows within those.
SCALE = 3 if platform.python_implementation() == "PyPy" else 1


def examples(count: int) -> int:
    """``count`` Hypothesis examples, or fewer (at least 10) on PyPy."""
    return max(10, count // SCALE) if SCALE > 1 else count
