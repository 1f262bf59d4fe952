"""The subscriber-facing web app served by `musicbutler web`."""
