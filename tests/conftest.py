"""Shared fixtures (register new ones here; keep their code in their own modules)."""

from pgserver import postgres_server  # noqa: F401  (a real PostgreSQL on loopback)
