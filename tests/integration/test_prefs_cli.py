"""`musicbutler prefs`: shows and sets preferences; bad values and unknown addresses get one line
and exit 2, and change nothing."""

from __future__ import annotations

from pathlib import Path

from tests.builders import mbid
from tests.integration.test_cli import musicbutler

BLOCKED = mbid("artist:Nickelback")


def test_prefs_shows_sets_and_refuses_bad_values(tmp_path: Path) -> None:
    assert musicbutler("db", "upgrade", cwd=tmp_path).returncode == 0
    people = tmp_path / "subscribers.csv"
    people.write_text("email,name\nAna@Example.com,Ana\n")
    assert musicbutler("subscribers", "import", str(people), cwd=tmp_path).returncode == 0

    shown = musicbutler("prefs", "ana@example.com", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        "ana@example.com",
        "  types: album, single, ep, compilation, live, remix, other",
        "  appearances: on",
        "  frequency: daily",
        "  blocked artists: none",
    ]

    changed = musicbutler(
        "prefs", "ANA@example.com", "--types", "album,EP", "--appearances", "off",
        "--block", BLOCKED, "--frequency", "weekly", "--weekday", "Friday",
        cwd=tmp_path,
    )  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.splitlines()[1:] == [
        "  types: album, ep",
        "  appearances: off",
        "  frequency: weekly on friday",
        f"  blocked artists: {BLOCKED}",
    ]

    for args, message in (
        (["--types", "album,mixtape"], "types 'album,mixtape': 'mixtape' is not one of album"),
        (["--appearances", "maybe"], "--appearances 'maybe': use on or off"),
        (["--weekday", "someday"], "weekday 'someday': use one of monday..sunday"),
        (["--block", "not-an-id"], "artist MBID 'not-an-id': not a MusicBrainz identifier"),
        (["--frequency", "daily", "--weekday", "monday"], "weekday is only for frequency weekly"),
    ):
        refused = musicbutler("prefs", "ana@example.com", *args, cwd=tmp_path)
        assert refused.returncode == 2, (args, refused.stdout)
        assert len(refused.stderr.splitlines()) == 1 and message in refused.stderr, refused.stderr

    unknown = musicbutler("prefs", "nobody@example.com", "--types", "album", cwd=tmp_path)
    assert unknown.returncode == 2
    assert unknown.stderr == ("musicbutler: 'nobody@example.com': no subscriber has this address\n")

    # Nothing the refused commands said was stored; unblocking and going daily again works.
    final = musicbutler(
        "prefs", "ana@example.com", "--unblock", BLOCKED, "--frequency", "daily", cwd=tmp_path
    )
    assert final.returncode == 0, final.stderr
    assert final.stdout.splitlines()[1:] == [
        "  types: album, ep",
        "  appearances: off",
        "  frequency: daily",
        "  blocked artists: none",
    ]

    broadcasts = musicbutler(
        "prefs", "ana@example.com", "--types", "default,broadcast", cwd=tmp_path
    )
    assert broadcasts.returncode == 0, broadcasts.stderr
    assert broadcasts.stdout.splitlines()[1] == (
        "  types: album, single, ep, compilation, live, remix, other, broadcast"
    )
