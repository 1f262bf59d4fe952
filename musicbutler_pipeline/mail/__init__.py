"""Mail: message building, transports (SMTP, file outbox, console) and unsubscribe tokens."""
