"""lbwire's loggers: standard `logging` loggers, loaded only when first used."""

from __future__ import annotations

import inspect
import logging
import subprocess
import sys

import pytest

from lbwire._log import LazyLogger


def test_import_lbwire_client_does_not_load_logging() -> None:
    # Unless a dependency does: anyio on Python 3.9 (PyPy) imports it itself.
    code = (
        "import sys, anyio; before = 'logging' in sys.modules; "
        "import lbwire.client; print(before, 'logging' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after = done.stdout.split()
    assert after == before
    if sys.version_info >= (3, 11):
        assert after == "False"  # this machine's CPython: the case that matters


def test_records_go_to_the_named_logger_from_the_callers_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = LazyLogger("lbwire.test")
    with caplog.at_level(logging.DEBUG, logger="lbwire.test"):
        line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
        logger.debug("one %s", "debug")
        logger.info("two %d", 2)
        logger.warning("three")
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("lbwire.test", logging.DEBUG, "one debug"),
        ("lbwire.test", logging.INFO, "two 2"),
        ("lbwire.test", logging.WARNING, "three"),
    ]
    assert [r.lineno for r in caplog.records] == [line, line + 1, line + 2]
    assert {r.funcName for r in caplog.records} == {
        "test_records_go_to_the_named_logger_from_the_callers_line"
    }


def test_levels_set_on_the_standard_logger_apply(caplog: pytest.LogCaptureFixture) -> None:
    logger = LazyLogger("lbwire.test.levels")
    standard = logging.getLogger("lbwire.test.levels")
    standard.setLevel(logging.WARNING)
    try:
        with caplog.at_level(logging.DEBUG):
            logger.info("filtered out")
            logger.warning("kept")
    finally:
        standard.setLevel(logging.NOTSET)
    assert [r.getMessage() for r in caplog.records if r.name == "lbwire.test.levels"] == ["kept"]
