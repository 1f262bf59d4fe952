"""Dagster-free domain: value types, the drop rules, digest rendering, the send ledger's values and
the scheduler-evidence rules."""
