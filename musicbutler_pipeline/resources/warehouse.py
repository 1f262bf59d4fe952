from dagster import InitResourceContext
from pydantic import Field, PrivateAttr
from sqlalchemy import Engine

from musicbutler_pipeline.resources.settings import UsesSettings
from musicbutler_pipeline.warehouse.engine import make_engine
from musicbutler_pipeline.warehouse.migrate import is_current


class WarehouseNotReady(RuntimeError):
    """The warehouse schema is missing or behind the code."""


class WarehouseResource(UsesSettings):
    """The warehouse database. Connects on first use, not when definitions load."""

    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; by default MUSICBUTLER_WAREHOUSE_URL, read at run start.",
    )
    _engine: Engine | None = PrivateAttr(default=None)

    def resolved_url(self) -> str:
        return self.url or self.environment().warehouse_url

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            engine = make_engine(self.resolved_url())
            if not is_current(engine):
                engine.dispose()
                raise WarehouseNotReady(
                    f"the warehouse at {engine.url.render_as_string(hide_password=True)} has no "
                    "current schema: run `musicbutler db upgrade`"
                )
            self._engine = engine
        return self._engine

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
