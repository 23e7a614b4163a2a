"""Every decision from a gRPC status or the server's text lives in lbwire.error.

A static check over the package's source: outside lbwire/error/ (and the
transport, lbwire/grpc, which produces statuses), no module compares a status
or searches an error's text; they decide by exception class.
"""

from __future__ import annotations

import ast
from pathlib import Path

import lbwire

PACKAGE = Path(lbwire.__file__).parent
EXEMPT = set((PACKAGE / "error").glob("*.py"))
EXEMPT_DIRS = {PACKAGE / "grpc", PACKAGE / "wire"}


def _modules() -> list[Path]:
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if path not in EXEMPT and not any(d in path.parents for d in EXEMPT_DIRS)
    ]


def _reads_error_text(node: ast.AST) -> bool:
    """`x.message`, `str(x)` or `x.lower()` of either: an error's text."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "lower"
    ):
        return _reads_error_text(node.func.value)
    if isinstance(node, ast.Attribute) and node.attr == "message":
        return True
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "str"
        and len(node.args) == 1
    )


def _names_status(node: ast.AST) -> bool:
    """`Status.X` or `x.status`."""
    return isinstance(node, ast.Attribute) and (
        node.attr == "status" or (isinstance(node.value, ast.Name) and node.value.id == "Status")
    )


def _decisions(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        text_search = any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops) and any(
            _reads_error_text(o) for o in node.comparators
        )
        if text_search or any(_names_status(o) for o in operands):
            found.append(f"{path.name}:{node.lineno}")
    return found


def test_the_checked_tree_is_the_package() -> None:
    names = {p.name for p in _modules()}
    assert {"client.py", "consumer.py", "_routing.py", "_subscribe.py"} <= names


def test_no_module_but_error_py_decides_by_status_or_text() -> None:
    found = [where for path in _modules() for where in _decisions(path)]
    assert found == [], "decide by exception class; map in lbwire/error.py"


def test_the_check_finds_such_decisions(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "if 'not found' in exc.message.lower(): pass\n"
        "if 'leader' in str(exc): pass\n"
        "if exc.status == Status.NOT_FOUND: pass\n"
        "if 'x' in names: pass\n"
    )
    assert _decisions(sample) == ["sample.py:1", "sample.py:2", "sample.py:3"]
