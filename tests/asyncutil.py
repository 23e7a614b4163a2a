"""Helpers every test directory shares (``tests/`` is on sys.path via its conftest)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


@asynccontextmanager
async def aclosing(agen: Any) -> AsyncIterator[Any]:
    """`contextlib.aclosing` (Python 3.10+), for 3.9 (PyPy) too."""
    try:
        yield agen
    finally:
        await agen.aclose()
