"""Source pages: the raw pages each partition was derived from, stored compressed."""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from datetime import date

from sqlalchemy import Connection, delete, func, insert, select

from musicbutler_pipeline.domain.models import SourcePage
from musicbutler_pipeline.warehouse.dialect import as_utc
from musicbutler_pipeline.warehouse.schema import source_pages


def replace_source_pages(
    connection: Connection, day: date, source: str, pages: Sequence[SourcePage]
) -> int:
    """Replace the raw pages of ``(day, source)``. Run inside the caller's transaction, the one
    that writes the release groups derived from them, so the two never disagree."""
    connection.execute(
        delete(source_pages).where(
            source_pages.c.partition_date == day, source_pages.c.source == source
        )
    )
    if not pages:
        return 0
    connection.execute(
        insert(source_pages),
        [
            {
                "partition_date": day,
                "source": source,
                "page_offset": page.offset,
                "url": page.url,
                "query": page.query,
                "sha256": page.sha256,
                "record_count": page.record_count,
                "total_count": page.total_count,
                "byte_count": len(page.body),
                "fetched_at": page.fetched_at,
                # mtime=0: the same body always compresses to the same bytes.
                "body_gzip": gzip.compress(page.body, mtime=0),
            }
            for page in pages
        ],
    )
    return len(pages)


def watch_start(connection: Connection, source: str, day: date) -> date:
    """The first partition fetched from ``source`` (``day`` itself on the very first fetch)."""
    first = connection.execute(
        select(func.min(source_pages.c.partition_date)).where(source_pages.c.source == source)
    ).scalar_one()
    return min(first, day) if first is not None else day


def stored_source_pages(connection: Connection, day: date, source: str) -> list[SourcePage]:
    """The raw pages of ``(day, source)`` as they were received, in their stored order."""
    rows = connection.execute(
        select(
            source_pages.c.url,
            source_pages.c.query,
            source_pages.c.page_offset,
            source_pages.c.body_gzip,
            source_pages.c.record_count,
            source_pages.c.total_count,
            source_pages.c.fetched_at,
        )
        .where(source_pages.c.partition_date == day, source_pages.c.source == source)
        .order_by(source_pages.c.page_offset)
    )
    return [
        SourcePage(
            url=row.url,
            query=row.query,
            offset=row.page_offset,
            body=gzip.decompress(row.body_gzip),
            record_count=row.record_count,
            total_count=row.total_count,
            fetched_at=as_utc(row.fetched_at),
        )
        for row in rows
    ]
