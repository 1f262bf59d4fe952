"""Application services: what the Dagster layer and the CLI ask for, composed from the domain
and the adapters (warehouse, mail, sources)."""
