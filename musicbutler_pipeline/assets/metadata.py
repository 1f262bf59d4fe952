"""Small markdown previews and column schemas for materialization metadata."""

from collections.abc import Iterable, Sequence

from dagster import TableColumn, TableColumnConstraints, TableSchema
from sqlalchemy import Table


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def column_schema(table: Table) -> TableSchema:
    """The warehouse table an asset writes, as the UI's column schema: taken from
    warehouse/schema.py so it cannot drift from the real table."""
    return TableSchema(
        columns=[
            TableColumn(
                name=column.name,
                type=str(column.type).lower(),
                description=column.comment,
                constraints=TableColumnConstraints(
                    nullable=bool(column.nullable), unique=bool(column.unique)
                ),
            )
            for column in table.columns
        ]
    )
