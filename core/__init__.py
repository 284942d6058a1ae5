"""Kilat's shared plumbing: configuration, database access, events, outbox, security."""
