"""The environment as a resource: read and validated once when a run or a sensor tick starts.

Every variable has a default (the warehouse is SQLite under ``MUSICBUTLER_HOME``, mail goes to a
file outbox, ...), and `make demo` and the tests run with none set. Dagster's ``EnvVar`` fails a
run when its variable is unset, so the resources do not take their values as ``EnvVar`` config:
each field's description names the variable used when the field is unset, and the values are
read here, at run start, never when definitions load and never shown in the UI.
"""

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from musicbutler_pipeline.settings import Settings, SettingsError


class SettingsResource(ConfigurableResource):
    """The ``MUSICBUTLER_*`` variables (and ``DAGSTER_HOME``), read once when a run or a sensor
    tick starts. A malformed one fails the first step that needs a setting, with one line naming
    the variable (a failed resource would fail the run without saying which step or why)."""

    _settings: Settings | None = PrivateAttr(default=None)
    _error: SettingsError | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        try:
            self._settings = Settings.from_env()
        except SettingsError as exc:
            self._error = exc

    def get(self) -> Settings:
        """The settings read at run start; outside a run (a test, a command) read on first use."""
        if self._error is not None:
            raise SettingsError(self._error.variable, self._error.problem)
        if self._settings is None:
            self._settings = Settings.from_env()
        return self._settings


class UsesSettings(ConfigurableResource):
    """A resource whose unset fields come from the environment."""

    settings: SettingsResource | None = Field(
        default=None,
        description=(
            "The environment, read once at run start (definitions.py shares one). Unset: read "
            "whenever a value is needed."
        ),
    )

    def environment(self) -> Settings:
        return (self.settings or SettingsResource()).get()

    def configuration_problems(self, settings: Settings) -> list[SettingsError]:
        """What this resource needs from ``settings`` (or its own config) before a run can work
        and does not have, one error per variable. Cheap and side-effect free: no request, no
        file written.

        `musicbutler run` and `doctor` ask every resource of the definitions before a run starts
        (``readiness.configuration_problems``); in a run launched by the UI or the schedule the
        resource raises the first one when a step first uses it, before any request."""
        return []

    def require_configuration(self) -> Settings:
        """The settings, after refusing with the first of ``configuration_problems``."""
        settings = self.environment()
        if problems := self.configuration_problems(settings):
            raise problems[0]
        return settings
