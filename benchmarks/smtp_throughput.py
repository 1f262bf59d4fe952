#!/usr/bin/env python3
"""SMTP throughput: one reused connection vs a new connection per message, and peak memory.

    .venv/bin/python benchmarks/smtp_throughput.py [--count 10000] [--starttls]

A loopback aiosmtpd sink runs in its own process (so it neither shares the GIL with the sender
nor counts towards its memory) and accepts and discards every message. The sender renders each
subscriber's digest with the real templates, builds the message and sends it through
``SmtpMailer``, exactly as ``services.notifier.send_digests`` does, minus the warehouse:

* ``render``: render + build only, no SMTP (the ceiling the transport can reach);
* ``reused``: render + build + send, one connection for the whole batch (what the pipeline does);
* ``per-message``: the same with a new connection (connect, EHLO, QUIT) for every message;
* ``transport``: sending 100 pre-built messages round-robin, to isolate the SMTP cost.

Peak memory: the sender's maximum resident set size, and the peak of Python allocations
(tracemalloc) during a separate, untimed reused-connection pass, which shows that memory does not
grow with the number of digests.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import resource
import ssl
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.message import EmailMessage
from multiprocessing.connection import Connection
from typing import Any

from musicbutler_pipeline.domain.digest import render_digest
from musicbutler_pipeline.domain.models import (
    CreditedArtist,
    Digest,
    DigestArtist,
    ReleaseGroup,
    Subscriber,
)
from musicbutler_pipeline.mail.backends.smtp import SmtpMailer
from musicbutler_pipeline.mail.message import build_message, message_id
from musicbutler_pipeline.mail.tokens import unsubscribe_links

DAY = date(2026, 11, 23)
MAIL_FROM = "MusicButler <butler@musicbutler.example>"
KEY = b"benchmark-key-0123456789"
NAMES = ("Zoë", "山田 花子", "José Müller-Ødegaard", None, "Дмитрий Волков", "Liam O'Connor")
ARTISTS = ("Björk", "Four Tet", "宇多田ヒカル", "ROSALÍA", "Sigur Rós", "Taylor Swift", "MØ")


def _mbid(label: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"musicbutler-bench:{label}"))


def digests(count: int) -> Iterator[Digest]:
    """``count`` typical digests (3 artists, 1-2 releases each), generated lazily."""
    for number in range(1, count + 1):
        artists = []
        for offset in range(3):
            name = ARTISTS[(number + offset) % len(ARTISTS)]
            releases = tuple(
                ReleaseGroup(
                    mbid=_mbid(f"{name}:{index}"),
                    title=f"{name} & <Friends> Vol. {index}",
                    primary_type="Album" if index else "Single",
                    secondary_types=(),
                    first_release_date=DAY.isoformat(),
                    release_date=DAY,
                    artists=(CreditedArtist(_mbid(name), name),),
                )
                for index in range(1 + (number + offset) % 2)
            )
            artists.append(DigestArtist(_mbid(name), name, releases))
        links = unsubscribe_links(
            number, base_url="https://musicbutler.example", mail_from=MAIL_FROM, key=KEY
        )
        yield Digest(
            subscriber=Subscriber(number, f"s{number}@example.org", NAMES[number % len(NAMES)]),
            partition_date=DAY,
            artists=tuple(artists),
            unsubscribe_url=links.url,
            unsubscribe_mailto=links.mailto,
        )


def message_for(digest: Digest) -> EmailMessage:
    return build_message(
        render_digest(digest),
        mail_from=MAIL_FROM,
        to_name=digest.subscriber.name,
        to_address=digest.subscriber.email,
        message_id=message_id(digest.subscriber.id, DAY, MAIL_FROM),
        unsubscribe_url=digest.unsubscribe_url,
        unsubscribe_mailto=digest.unsubscribe_mailto,
        sent_at=datetime(2026, 11, 23, 21, 35, tzinfo=UTC),
    )


def _sink(pipe: Connection, certificate_pem: bytes | None) -> None:
    """The SMTP sink process: accept everything, keep nothing, report the port, wait.

    With ``certificate_pem`` (key and chain), it offers and requires STARTTLS.
    """
    import ssl
    import tempfile

    from aiosmtpd.controller import Controller

    class Sink:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            return "250 OK"

    class LoopbackController(Controller):
        def _trigger_server(self) -> None:
            assert self.server is not None
            self.port = self.server.sockets[0].getsockname()[1]
            super()._trigger_server()

    kwargs: dict[str, Any] = {}
    if certificate_pem is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.NamedTemporaryFile(suffix=".pem") as pem:
            pem.write(certificate_pem)
            pem.flush()
            context.load_cert_chain(pem.name)
        kwargs.update(tls_context=context, require_starttls=True)
    controller = LoopbackController(Sink(), hostname="127.0.0.1", port=0, **kwargs)
    controller.start()
    pipe.send(controller.port)
    pipe.recv()  # until the benchmark says stop
    controller.stop()


@dataclass
class Result:
    name: str
    messages: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def timed(name: str, count: int, run: Callable[[], None]) -> Result:
    start = time.perf_counter()
    run()
    return Result(name, count, time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="digests per run")
    parser.add_argument(
        "--starttls", action="store_true", help="STARTTLS with a throwaway CA (needs trustme)"
    )
    args = parser.parse_args(argv)
    count: int = args.count

    certificate_pem: bytes | None = None
    client_context: ssl.SSLContext | None = None
    if args.starttls:
        import trustme

        authority = trustme.CA()
        certificate = authority.issue_cert("127.0.0.1")
        certificate_pem = certificate.private_key_and_cert_chain_pem.bytes()
        client_context = ssl.create_default_context()
        authority.configure_trust(client_context)

    processes = multiprocessing.get_context("spawn")
    parent, child = processes.Pipe()
    sink = processes.Process(target=_sink, args=(child, certificate_pem), daemon=True)
    sink.start()
    port = parent.recv()

    def mailer() -> SmtpMailer:
        return SmtpMailer(
            "127.0.0.1",
            port,
            starttls=args.starttls,
            ssl_context=client_context,
            timeout=10,
            local_hostname="bench.local",
        )

    def render_only() -> None:
        for digest in digests(count):
            message_for(digest).as_bytes()

    def reused() -> None:
        with mailer() as smtp:
            for digest in digests(count):
                smtp.send(message_for(digest))

    def per_message() -> None:
        for digest in digests(count):
            with mailer() as smtp:
                smtp.send(message_for(digest))

    prebuilt = [message_for(digest) for digest in digests(100)]

    def transport_reused() -> None:
        with mailer() as smtp:
            for message in itertools.islice(itertools.cycle(prebuilt), count):
                smtp.send(message)

    def transport_per_message() -> None:
        for message in itertools.islice(itertools.cycle(prebuilt), count):
            with mailer() as smtp:
                smtp.send(message)

    try:
        results = [
            timed("render + build only", count, render_only),
            timed("reused connection", count, reused),
            timed("new connection per message", count, per_message),
            timed("transport only, reused", count, transport_reused),
            timed("transport only, per message", count, transport_per_message),
        ]
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        tracemalloc.start()
        reused()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        parent.send("stop")
        sink.join(timeout=10)

    size = len(message_for(next(digests(1))).as_bytes())
    mode = "STARTTLS" if args.starttls else "plain SMTP"
    print(
        f"SMTP throughput, {count:,} digests to a loopback aiosmtpd sink, {mode} "
        f"({size:,} bytes each)"
    )
    print(f"Python {sys.version.split()[0]}")
    print()
    print(f"{'run':<30} {'seconds':>9} {'emails/s':>10}")
    for result in results:
        print(f"{result.name:<30} {result.seconds:>9.2f} {result.rate:>10,.0f}")
    by_name = {result.name: result for result in results}
    end_to_end = by_name["reused connection"].rate / by_name["new connection per message"].rate
    transport = by_name["transport only, reused"].rate / by_name["transport only, per message"].rate
    print()
    print(f"reused / per-message, end to end:    {end_to_end:.2f}x")
    print(f"reused / per-message, transport only: {transport:.2f}x")
    print(f"peak RSS of the sender:               {rss_mib:.0f} MiB")
    print(f"peak Python allocations, reused run:  {peak / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
