"""Dagster-free domain: value types, the drop rules, digest rendering and the send ledger."""
