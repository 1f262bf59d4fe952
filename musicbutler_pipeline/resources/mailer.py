from datetime import datetime, timedelta

from pydantic import Field
from sqlalchemy import Engine

from musicbutler_pipeline.domain.schedulers import ALERT_PERIOD
from musicbutler_pipeline.mail.backends.base import Mailer
from musicbutler_pipeline.mail.tokens import MailIdentity
from musicbutler_pipeline.mail.url import mailer_from_url
from musicbutler_pipeline.resources.settings import UsesSettings
from musicbutler_pipeline.services.alerts import alert_operator
from musicbutler_pipeline.settings import (
    Settings,
    SettingsError,
    secret_key,
    secret_key_problem,
    smtp_password,
)


class MailerResource(UsesSettings):
    """Where digests go (``MUSICBUTLER_MAIL_URL``) and who they come from.

    The SMTP password and the signing key are read from the environment when a run opens the
    mailer, never taken as config, so they appear in no run config, log or UI page. Building the
    resource connects to nothing: the transport connects on its first send.
    """

    url: str | None = Field(
        default=None,
        description=(
            "default: MUSICBUTLER_MAIL_URL, e.g. smtp://user@host:587?starttls=1&rate=10 "
            "(keep the password in MUSICBUTLER_SMTP_PASSWORD, not here: config is shown in the UI)"
        ),
    )
    mail_from: str | None = Field(default=None, description="default: MUSICBUTLER_MAIL_FROM")
    base_url: str | None = Field(default=None, description="default: MUSICBUTLER_BASE_URL")
    postal_address: str | None = Field(
        default=None,
        description="shown in every digest's footer; default: MUSICBUTLER_POSTAL_ADDRESS",
    )

    def configuration_problems(self, settings: Settings) -> list[SettingsError]:
        problem = secret_key_problem(settings.home)
        return [problem] if problem else []

    def open(self) -> Mailer:
        """A transport for one batch; it connects on its first send."""
        return mailer_from_url(self.url or self.environment().mail_url, password=smtp_password())

    def sender(self) -> str:
        """The From address of every message this mailer sends."""
        return self.mail_from or self.environment().mail_from

    def identity(self) -> MailIdentity:
        settings = self.require_configuration()
        return MailIdentity(
            mail_from=self.sender(),
            base_url=(self.base_url or settings.base_url).rstrip("/"),
            secret_key=secret_key(settings.home),
            postal_address=self.postal_address or settings.postal_address,
        )

    def alert_operator(
        self,
        engine: Engine,
        kind: str,
        text: str,
        *,
        now: datetime,
        claim: str | None = None,
        period: timedelta = ALERT_PERIOD,
    ) -> bool:
        """Tell MUSICBUTLER_OPERATOR_EMAIL through this mailer, once per ``claim`` (by default
        ``kind``) within ``period`` (services/alerts.py); whether an e-mail went out."""
        return alert_operator(
            engine,
            kind,
            text,
            operator_email=self.environment().operator_email,
            mail_from=self.sender(),
            mailer=self.open(),
            now=now,
            claim=claim,
            period=period,
        )
