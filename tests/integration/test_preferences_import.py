"""`subscribers import` takes optional preference columns, validated line by line."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from musicbutler_pipeline.domain.preferences import Frequency, Preferences, ReleaseType
from musicbutler_pipeline.warehouse.imports import import_subscribers
from musicbutler_pipeline.warehouse.preferences import show_preferences
from tests.builders import mbid


def test_subscribers_preference_columns_validated_by_line(engine: Engine, tmp_path: Path) -> None:
    blocked = [mbid("artist:a"), mbid("artist:b")]
    path = tmp_path / "subscribers.csv"
    path.write_text(
        "email,name,types,appearances,frequency,weekday,blocked_artists\n"
        f'ana@example.com,Ana,"album,ep",off,weekly,Friday,{blocked[0]} {blocked[1]}\n'
        "ben@example.com,Ben,,,,,\n"
        "cai@example.com,Cai,album,sometimes,,,\n"
        "dee@example.com,Dee,,,weekly,,\n"
        "eve@example.com,Eve,,,,,not-an-mbid\n"
        "fay@example.com,Fay,mixtape,,,,\n"
    )
    report = import_subscribers(engine, path)
    assert [str(error) for error in report.errors] == [
        "line 4: appearances 'sometimes': use on or off",
        "line 5: frequency weekly needs a weekday (monday..sunday)",
        "line 6: artist MBID 'not-an-mbid': not a MusicBrainz identifier (a UUID)",
        "line 7: types 'mixtape': 'mixtape' is not one of "
        "album, single, ep, compilation, live, remix, other, broadcast (or all, default)",
    ]
    assert (report.inserted, report.preferences_changed) == (2, 1)
    ana = show_preferences(engine, "ana@example.com")
    assert ana.release_types == {ReleaseType.ALBUM, ReleaseType.EP}
    assert (ana.appearances, ana.frequency, ana.weekday) == (False, Frequency.WEEKLY, "friday")
    assert ana.blocked_artists == set(blocked)
    assert show_preferences(engine, "ben@example.com") == Preferences()

    again = import_subscribers(engine, path)
    assert (again.inserted, again.updated, again.preferences_changed) == (0, 0, 0)
