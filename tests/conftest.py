"""Shared fixtures (register new ones here; keep their code in their own modules)."""

from indiserver import indi_server  # noqa: F401  (INDI server with its simulator drivers)
from pgserver import postgres_server  # noqa: F401  (a real PostgreSQL on loopback)
