"""The warehouse: SQLAlchemy schema, Alembic migrations and set-based repository functions."""
