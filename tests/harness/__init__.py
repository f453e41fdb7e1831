"""Real servers and helpers for the engine tests: PostgreSQL, Dovecot, the sync world."""
