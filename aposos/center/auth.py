"""Access tokens of the data center.

A token is 256 random bits, shown once when it is made; the database keeps only its
SHA-256 (a token is too random for a slow password hash to add anything). Roles:

- ``station``: upload its own tracklets, send heartbeats, read its tasks;
- ``analyst``: read everything;
- ``admin``: everything an analyst may, plus catalogue, users and re-correlation.

Tokens travel only in the ``Authorization: Bearer`` header and never in URLs, so
access logs cannot show them (the API refuses a token in a query string and keeps it
out of its log).

A token may expire (``valid_days``). :func:`rotate_token` gives a holder a new token
while the old one stays valid for an overlap, so a station can switch without a gap.
A station's first token is delivered with a one-time *enrolment code*
(:func:`new_enrolment_code`): the data-center operator reads it to the observatory
operator, who types it at the station (``aposos station enrol``); the station trades
it for its token over the (TLS) link, and the token never travels by mail or phone.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from aposos.center.dbtypes import ROLES, utcnow
from aposos.center.ingestsql import db_time
from aposos.center.store import Store

__all__ = [
    "ROLES",
    "AuthError",
    "Principal",
    "TokenCache",
    "authenticate",
    "enrol",
    "hash_token",
    "issue_token",
    "new_enrolment_code",
    "new_token",
    "rotate_token",
    "validate_name",
]

TOKEN_PREFIX = "aposos_"
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: typed by hand
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


def _expiry(valid_days: float | None):
    return None if valid_days is None else utcnow() + timedelta(days=valid_days)


def issue_token(store: Store, name: str, role: str, *, valid_days: float | None = None) -> str:
    """Make a token for ``name`` with ``role``; returns it (the only time it is seen).

    Raises ``ValueError`` for a bad name or role, or when ``name`` already holds a
    live token.
    """
    validate_name(name)
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
    token = new_token()
    store.add_principal(name, role, hash_token(token), expires_at=_expiry(valid_days))
    return token


def rotate_token(
    store: Store, name: str, *, overlap_hours: float = 24.0, valid_days: float | None = None
) -> str:
    """A new token for ``name``; the old one stays valid for ``overlap_hours``."""
    token = new_token()
    until = utcnow() + timedelta(hours=overlap_hours)
    if not store.rotate_token(
        name, hash_token(token), overlap_until=until, expires_at=_expiry(valid_days)
    ):
        raise ValueError(f"{name} holds no live token to rotate")
    return token


def _normal_code(code: str) -> str:
    return "".join(c for c in code.upper() if c.isalnum())


def new_enrolment_code(store: Store, station: str, *, valid_hours: float = 24.0) -> str:
    """A one-time code (``XXXX-XXXX-XXXX-XXXX``, 79 bits) that ``station`` trades for its
    token within ``valid_hours``; only its hash is stored."""
    validate_name(station)
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(16))
    store.add_enrolment(station, hash_token(raw), utcnow() + timedelta(hours=valid_hours))
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def enrol(store: Store, code: str, *, valid_days: float | None = None) -> tuple[str, str]:
    """Trade an enrolment code for a station token: (station, token).

    A station that already holds a token gets a new one by rotation (the old one
    stays valid for a day). Raises :class:`AuthError` (401) for an unknown, used or
    expired code.
    """
    station = store.redeem_enrolment(hash_token(_normal_code(code)))
    if station is None:
        raise AuthError(401, "unknown, used or expired enrolment code")
    try:
        return station, issue_token(store, station, "station", valid_days=valid_days)
    except ValueError:
        return station, rotate_token(store, station, valid_days=valid_days)


def authenticate(store: Store, authorization: str | None) -> Principal:
    """The caller named by an ``Authorization`` header value; raises :class:`AuthError`."""
    token = _bearer(authorization)
    found = store.principal_by_token_hash(hash_token(token))
    if found is None:
        raise AuthError(401, "unknown or revoked token, or expired")
    return Principal(name=found["name"], role=found["role"])


def _bearer(authorization: str | None) -> str:
    """The token of an ``Authorization`` header value; raises :class:`AuthError`."""
    if not authorization:
        raise AuthError(401, "missing token: send 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError(401, "malformed Authorization header: expected 'Bearer <token>'")
    return token


class TokenCache:
    """Tokens this process has verified, so that a request's token check needs no
    trip to the database (nor to the thread pool that runs it).

    An entry (token hash -> holder, valid until) is used only while the store's
    principals stamp (:meth:`Store.principals_stamp`, a 16-byte file every change
    of a token rewrites after its commit, in whatever process) is the one it was
    filled under; a changed stamp empties the cache, so a revoked or rotated token
    fails at its next request. An entry also ends at the token's expiry (or the end
    of a rotated-out token's overlap). Unknown tokens are not cached. Only SQLite
    file databases have a stamp: elsewhere :meth:`lookup` always misses.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, store: Store):
        self.store = store
        self.enabled = store.principals_stamp_path is not None
        self._stamp = b""
        self._entries: dict[str, tuple[Principal, str | None]] = {}

    def lookup(self, authorization: str | None) -> Principal | None:
        """The caller when its token is cached and still good, else ``None`` (ask
        :meth:`verify`). Raises :class:`AuthError` for a malformed header."""
        token = _bearer(authorization)
        if not self.enabled or not self._entries:
            return None
        stamp = self.store.principals_stamp()
        if stamp != self._stamp:
            self._entries.clear()
            return None
        entry = self._entries.get(hash_token(token))
        if entry is None:
            return None
        who, until = entry
        if until is not None and db_time(utcnow()) >= until:
            return None
        return who

    def verify(self, authorization: str | None) -> Principal:
        """Check the token in the database (blocking: run it in a thread) and cache
        the holder; raises :class:`AuthError`."""
        token = _bearer(authorization)
        if not self.enabled:
            return authenticate(self.store, authorization)
        stamp = self.store.principals_stamp()  # read before the rows: see the class
        digest = hash_token(token)
        found = self.store.principal_entry(digest)
        if found is None:
            raise AuthError(401, "unknown or revoked token, or expired")
        name, role, until = found
        who = Principal(name=name, role=role)
        if stamp != self._stamp:
            self._entries, self._stamp = {}, stamp
        if len(self._entries) < self.MAX_ENTRIES:
            self._entries[digest] = (who, until)
        return who
