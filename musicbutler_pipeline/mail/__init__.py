"""Mail: message building, transports (SMTP, file outbox, console), unsubscribe tokens and the
unsubscribe endpoint (``web``)."""
