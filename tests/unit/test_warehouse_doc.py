"""docs/warehouse.md describes every table and column of warehouse/schema.py, each under its own
heading, so a column added to the schema without a line in the doc fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from musicbutler_pipeline.warehouse.schema import metadata

DOC = Path(__file__).resolve().parents[2] / "docs" / "warehouse.md"
HEADING = re.compile(r"^(#{2,4}) (.+)$", re.MULTILINE)


def sections(part: str = "Tables") -> dict[str, str]:
    """Text under each heading of the doc's ``## <part>`` that names one object in backticks, up
    to the next heading."""
    text = DOC.read_text(encoding="utf-8")
    text = text[text.index(f"\n## {part}\n") :]
    text = text[: text.find("\n## ", 1)]
    found: dict[str, str] = {}
    headings = list(HEADING.finditer(text))
    for heading, following in zip(headings, [*headings[1:], None], strict=True):
        named = re.fullmatch(r"`(\w+)`", heading.group(2).strip())
        if named:
            end = following.start() if following else len(text)
            found[named.group(1)] = text[heading.end() : end]
    return found


@pytest.mark.parametrize("table", sorted(metadata.tables))
def test_every_column_of_the_table_is_documented_under_its_heading(table: str) -> None:
    documented = sections()
    assert table in documented, f"docs/warehouse.md has no '### `{table}`' section"
    missing = [
        column.name
        for column in metadata.tables[table].columns
        if f"`{column.name}`" not in documented[table]
    ]
    assert not missing, f"docs/warehouse.md `{table}` does not describe columns {missing}"


def test_the_doc_describes_no_table_the_schema_does_not_have() -> None:
    assert set(sections()) == set(metadata.tables)
