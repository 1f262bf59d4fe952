#!/usr/bin/env python3
"""Generate the sample day's release browse pages with URL relationships (listen links).

Writes ``musicbutler_pipeline/sources/data/sample/musicbrainz/releases/<release group>/
offset-0000.json``: for each release group owed on the sample day (``expected.json``'s
``pool_release_groups_on_day``), the answer MusicBrainz gives to
``/ws/2/release?release-group=<mbid>&inc=url-rels&fmt=json&limit=100&offset=0``. The pages are
hand-made (the releases are the sample's fictional ones, taken from the recorded search pages;
the URLs point at no real album) but in the web service's real response format: the release
fields of a browse, and ``relations`` with the real relationship type names and ids.

Cases covered on purpose: release groups with several services, with none (the digest keeps only
the MusicBrainz link), with two editions that each have a Spotify album (the first official one
is shown), with URLs that are not listen links (Discogs), with one malformed release (no id,
skipped) and with a relationship whose URL has no ``resource`` (left out).

Deterministic (hashes, no clock or randomness): running it twice gives identical files.

    .venv/bin/python scripts/make_sample_listen_links.py
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "musicbutler_pipeline" / "sources" / "data" / "sample"
PAGES = SAMPLE / "musicbrainz" / "2026-11-23"
OUT = SAMPLE / "musicbrainz" / "releases"

# MusicBrainz's release-url relationship types (name, id).
FREE_STREAMING = ("free streaming", "08445ccf-7b99-4438-9f9a-fb9ac18099ee")
STREAMING = ("streaming", "320adf26-96fa-4183-9045-1f5f32f833cb")
PURCHASE = ("purchase for download", "98e08c20-8402-4163-8970-53504bb6a1e4")
DISCOGS = ("discogs", "4a78823c-1c53-4176-a5f3-58026c76f2bc")
OFFICIAL = "4e304316-386d-3409-af2e-78857eec5cfe"
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def token(seed: str, length: int, alphabet: str = BASE62) -> str:
    digest = int(hashlib.sha256(seed.encode()).hexdigest(), 16)
    chars = []
    for _ in range(length):
        digest, index = divmod(digest, len(alphabet))
        chars.append(alphabet[index])
    return "".join(chars)


def slug(title: str) -> str:
    text = "".join(char.lower() if char.isascii() and char.isalnum() else "-" for char in title)
    return "-".join(part for part in text.split("-") if part) or "release"


def url_for(service: str, seed: str, title: str) -> tuple[tuple[str, str], str]:
    digits = "0123456789"
    return {
        "spotify": (FREE_STREAMING, f"https://open.spotify.com/album/{token(seed, 22)}"),
        "apple": (STREAMING, f"https://music.apple.com/album/{token(seed, 10, digits)}"),
        "bandcamp": (
            PURCHASE, f"https://{token(seed, 8).lower()}.bandcamp.com/album/{slug(title)}"
        ),
        "deezer": (FREE_STREAMING, f"https://www.deezer.com/album/{token(seed, 9, digits)}"),
        "tidal": (STREAMING, f"https://tidal.com/browse/album/{token(seed, 9, digits)}"),
        "youtube-music": (
            FREE_STREAMING,
            f"https://music.youtube.com/playlist?list=OLAK5uy_{token(seed, 33)}",
        ),
        "soundcloud": (
            FREE_STREAMING, f"https://soundcloud.com/{token(seed, 8).lower()}/sets/{slug(title)}"
        ),
        "discogs": (DISCOGS, f"https://www.discogs.com/release/{token(seed, 8, digits)}"),
    }[service]  # fmt: skip


# Which services each owed release group has, by its position in id order (cycled).
PLANS: tuple[tuple[str, ...], ...] = (
    ("spotify", "apple", "bandcamp", "deezer", "tidal"),
    ("spotify", "apple", "youtube-music"),
    ("bandcamp", "soundcloud", "discogs"),
    ("spotify", "deezer", "tidal", "youtube-music"),
    (),  # nothing known: the digest keeps only the MusicBrainz link
    ("spotify", "apple", "deezer"),
    ("bandcamp",),
)


def relation(kind: tuple[str, str], url: str) -> dict[str, Any]:
    return {
        "attribute-ids": {},
        "attribute-values": {},
        "attributes": [],
        "begin": None,
        "direction": "forward",
        "end": None,
        "ended": False,
        "source-credit": "",
        "target-credit": "",
        "target-type": "url",
        "type": kind[0],
        "type-id": kind[1],
        "url": {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, "musicbutler-sample:url:" + url)),
                "resource": url},
    }  # fmt: skip


def release(record: dict[str, Any], edition: dict[str, Any], relations: list[Any]) -> dict:
    date = record.get("first-release-date") or ""
    return {
        "id": edition["id"],
        "title": edition.get("title", record["title"]),
        "status": edition.get("status", "Official"),
        "status-id": edition.get("status-id", OFFICIAL),
        "quality": "normal",
        "disambiguation": "",
        "packaging": "None",
        "packaging-id": "119eba76-b343-3e02-a292-f0f00644bb9b",
        "text-representation": {"language": "eng", "script": "Latn"},
        "date": date,
        "country": "XW",
        "release-events": [
            {
                "date": date,
                "area": {
                    "id": "525d4e18-3d00-31b9-a58b-a146a916de8f",
                    "name": "[Worldwide]",
                    "sort-name": "[Worldwide]",
                    "disambiguation": "",
                    "iso-3166-1-codes": ["XW"],
                    "type": None,
                    "type-id": None,
                },
            }
        ],
        "barcode": None,
        "asin": None,
        "cover-art-archive": {
            "artwork": False,
            "count": 0,
            "front": False,
            "back": False,
            "darkened": False,
        },
        "relations": relations,
    }


def main() -> None:
    expected = json.loads((SAMPLE / "expected.json").read_text())
    owed = sorted(expected["pool_release_groups_on_day"])
    records = {
        record.get("id"): record
        for page in sorted(PAGES.glob("offset-*.json"))
        for record in json.loads(page.read_text())["release-groups"]
    }
    for position, mbid in enumerate(owed):
        record = records[mbid]
        plan = PLANS[position % len(PLANS)]
        editions = record.get("releases") or [{"id": str(uuid.uuid5(uuid.NAMESPACE_URL, mbid))}]
        releases: list[Any] = []
        for number, edition in enumerate(editions):
            seed = f"{edition['id']}:{number}"
            # Later editions (a bonus track version) have their own Spotify album only.
            services = plan if number == 0 else tuple(s for s in plan if s == "spotify")
            relations = []
            for service in services:
                kind, url = url_for(service, f"{seed}:{service}", record["title"])
                relations.append(relation(kind, url))
            releases.append(release(record, edition, relations))
        if position == 1:
            # A relationship whose URL has no resource: left out, the others still count.
            releases[0]["relations"].append({**relation(FREE_STREAMING, "x"), "url": {"id": None}})
        if position == 3:
            # A malformed release (no id): logged and skipped, the good one still gives links.
            releases.append({"title": record["title"], "status": "Official", "relations": []})
        body = {"release-count": len(releases), "release-offset": 0, "releases": releases}
        directory = OUT / mbid
        directory.mkdir(parents=True, exist_ok=True)
        text = json.dumps(body, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
        (directory / "offset-0000.json").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
