"""Mail backends, one per file as Django's: ``base`` (the Mailer interface and its errors),
``smtp``, ``file`` (an outbox folder), ``console`` and ``memory`` (for tests).
``musicbutler_pipeline.mail.url`` picks one from ``MUSICBUTLER_MAIL_URL``."""
