"""Definitions that do not import musicbutler_pipeline.definitions: a daemon loading them is a
scheduler running other code (an old deploy), with no presence thread of ours."""

from dagster import Definitions, asset


@asset
def unrelated() -> None:
    return None


defs = Definitions(assets=[unrelated])
