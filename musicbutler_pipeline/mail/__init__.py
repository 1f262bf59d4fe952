"""Mail: message building (``message``), the backends that send it (``backends/``, chosen from
``MUSICBUTLER_MAIL_URL`` by ``url``) and signed unsubscribe tokens and links (``tokens``)."""
