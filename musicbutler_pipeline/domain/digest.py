"""Rendering one subscriber's digest: subject, plain text and HTML (Jinja2, autoescaped)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from musicbutler_pipeline.domain.models import Digest
from musicbutler_pipeline.domain.rules import digest_subject

MUSICBRAINZ_WEB = "https://musicbrainz.org"
COVER_ART_ARCHIVE = "https://coverartarchive.org"


@dataclass(frozen=True, slots=True)
class RenderedDigest:
    subject: str
    text: str
    html: str


@cache
def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("musicbutler_pipeline.domain", "templates"),
        # Titles and names come from MusicBrainz and subscribers: never trusted as markup.
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.globals.update(musicbrainz=MUSICBRAINZ_WEB, cover_art=COVER_ART_ARCHIVE)
    return environment


def render_digest(digest: Digest) -> RenderedDigest:
    subject = digest_subject(digest.partition_date)
    context = {
        "digest": digest,
        "subject": subject,
        "greeting_name": digest.subscriber.name or "there",
        "release_count": len(digest.release_group_mbids),
    }
    environment = _environment()
    return RenderedDigest(
        subject=subject,
        text=environment.get_template("digest.txt").render(context),
        html=environment.get_template("digest.html").render(context),
    )
