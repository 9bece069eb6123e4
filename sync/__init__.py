"""State store, outbox, Google and Exchange writers, the sync job and the CLI."""
