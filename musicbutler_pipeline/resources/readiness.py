"""Whether a run of these resources can work, asked before it starts: the one place that collects
what each resource needs from the environment (`musicbutler run`, `demo` and `doctor` use it)."""

from collections.abc import Mapping

from musicbutler_pipeline.resources.settings import UsesSettings
from musicbutler_pipeline.settings import Settings, SettingsError


def configuration_problems(resources: Mapping[str, object]) -> list[SettingsError]:
    """Every variable that is malformed, or missing for one of ``resources``, as one error each
    (a malformed variable alone, since the rest cannot be judged without it)."""
    try:
        settings = Settings.from_env()  # afresh: a resource may hold what an earlier call read
    except SettingsError as exc:
        return [exc]
    problems: dict[str, SettingsError] = {}
    for resource in resources.values():
        if isinstance(resource, UsesSettings):
            for problem in resource.configuration_problems(settings):
                problems.setdefault(problem.variable, problem)
    return list(problems.values())
