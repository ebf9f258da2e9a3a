"""Access tokens of the data center.

A token is 256 random bits, shown once when it is made; the database keeps only its
SHA-256 (a token is too random for a slow password hash to add anything). Roles:

- ``station``: upload its own tracklets, send heartbeats, read its tasks;
- ``analyst``: read everything;
- ``admin``: everything an analyst may, plus catalogue, users and re-correlation.

Tokens travel only in the ``Authorization: Bearer`` header and never in URLs, so
access logs cannot show them.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from aposos.center.dbtypes import ROLES
from aposos.center.store import Store

__all__ = [
    "ROLES",
    "AuthError",
    "Principal",
    "authenticate",
    "hash_token",
    "issue_token",
    "new_token",
    "validate_name",
]

TOKEN_PREFIX = "aposos_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")


class AuthError(Exception):
    """Refused access: ``status`` is 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Principal:
    """Who is calling: a name and a role (a station's name is its code)."""

    name: str
    role: str

    @property
    def station(self) -> str | None:
        return self.name if self.role == "station" else None

    def require(self, *roles: str) -> None:
        """Raise 403 unless the caller has one of ``roles``."""
        if self.role not in roles:
            raise AuthError(
                403, f"this needs the role {' or '.join(roles)}; {self.name} is {self.role}"
            )


def new_token() -> str:
    """A fresh random token (43 URL-safe characters after the prefix)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The stored form of a token (hex SHA-256)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def validate_name(name: str) -> str:
    """Check a station code or user name (letters, digits, ``_.-``; up to 32)."""
    if not _NAME.match(name or ""):
        raise ValueError(
            f"bad name {name!r}: use 1-32 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def issue_token(store: Store, name: str, role: str) -> str:
    """Make a token for ``name`` with ``role``; returns it (the only time it is seen).

    Raises ``ValueError`` for a bad name or role, or when ``name`` already holds a
    live token.
    """
    validate_name(name)
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
    token = new_token()
    store.add_principal(name, role, hash_token(token))
    return token


def authenticate(store: Store, authorization: str | None) -> Principal:
    """The caller named by an ``Authorization`` header value; raises :class:`AuthError`."""
    if not authorization:
        raise AuthError(401, "missing token: send 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError(401, "malformed Authorization header: expected 'Bearer <token>'")
    found = store.principal_by_token_hash(hash_token(token))
    if found is None:
        raise AuthError(401, "unknown or revoked token")
    return Principal(name=found["name"], role=found["role"])
