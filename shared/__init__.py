"""Plumbing every fenxiao service shares: event envelope and contracts, topics, the
exactly-once projector with its outbox, database, settings, telemetry and identity.
No business rule lives here."""
