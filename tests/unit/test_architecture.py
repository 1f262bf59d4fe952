"""The entry points hold no SQL: they call the warehouse's functions. (What may import what is
checked by the import-linter contracts in pyproject.toml, which `make lint` runs.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "musicbutler_pipeline"
ENTRY_POINTS = sorted(
    [PACKAGE / name for name in ("cli.py", "daemon.py", "demo.py", "doctor.py", "runner.py")]
    + list((PACKAGE / "web").glob("*.py"))
)
# Opening a connection or transaction, or running a statement, is the warehouse's business.
SQL_CALLS = frozenset({"connect", "begin", "execute", "exec_driver_sql", "scalar", "scalars"})
SQL_BUILDERS = frozenset({"select", "insert", "update", "delete", "text", "func"})


def sql_in(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in SQL_CALLS
        ):
            found.append(f"line {node.lineno}: .{node.func.attr}()")
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            found.extend(
                f"line {node.lineno}: imports {alias.name} from {node.module}"
                for alias in node.names
                if alias.name in SQL_BUILDERS
            )
    return found


@pytest.mark.parametrize(
    "path", ENTRY_POINTS, ids=lambda path: path.relative_to(PACKAGE).as_posix()
)
def test_entry_point_holds_no_sql(path: Path):
    assert sql_in(path) == []


def test_the_check_sees_sql(tmp_path: Path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from sqlalchemy import select, Engine\n"
        "def f(engine):\n"
        "    with engine.begin() as connection:\n"
        "        connection.execute(select(1))\n"
    )
    assert sql_in(sample) == [
        "line 1: imports select from sqlalchemy",
        "line 3: .begin()",
        "line 4: .execute()",
    ]
