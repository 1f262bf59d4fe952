"""The warehouse: SQLAlchemy schema, Alembic migrations, and set-based queries in one module per
table area (subscribers, libraries, releases, pages, drops, digests, health)."""
