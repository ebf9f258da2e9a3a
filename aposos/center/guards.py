"""Guards at the door of the API: per-station rate limits, tokens in URLs, log redaction.

>>> limiter = RateLimiter(per_minute=60, burst=10)
>>> limiter.wait_time("IRN1")  # 0.0: go ahead
0.0
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from urllib.parse import parse_qsl

__all__ = ["RateLimiter", "TokenInUrlGuard", "install_log_redaction", "redact"]

# Query parameter names that carry credentials, and the shape of our tokens.
_SECRET_NAMES = {"token", "access_token", "api_key", "apikey", "auth", "authorization"}
_TOKEN_RE = re.compile(r"aposos_[A-Za-z0-9_\-]{8,}")
_QUERY_RE = re.compile(r"\?\S*")


class RateLimiter:
    """A token bucket per key: ``per_minute`` on average, ``burst`` at once (0: off)."""

    def __init__(self, per_minute: float, burst: int):
        self.rate = per_minute / 60.0
        self.burst = max(1, burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def wait_time(self, key: str) -> float:
        """Take one token for ``key``: 0.0 if allowed, else seconds until one is free."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            level, then = self._buckets.get(key, (float(self.burst), now))
            level = min(float(self.burst), level + (now - then) * self.rate)
            if level >= 1.0:
                self._buckets[key] = (level - 1.0, now)
                return 0.0
            self._buckets[key] = (level, now)
            return (1.0 - level) / self.rate


def _has_secret(query: str) -> bool:
    if _TOKEN_RE.search(query):
        return True
    try:
        pairs = parse_qsl(query, keep_blank_values=True)
    except ValueError:
        return False
    return any(name.lower() in _SECRET_NAMES for name, _ in pairs)


def redact(text: str) -> str:
    """``text`` with query strings that carry a secret (and any token) blanked out."""
    if "?" in text:
        text = _QUERY_RE.sub(
            lambda m: "?[redacted]" if _has_secret(m.group(0)[1:]) else m.group(0), text
        )
    return _TOKEN_RE.sub("aposos_[redacted]", text)


class _RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def install_log_redaction() -> None:
    """Keep secrets out of the access and error logs (uvicorn's loggers)."""
    for name in ("uvicorn.access", "uvicorn.error", "uvicorn"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactFilter) for f in logger.filters):
            logger.addFilter(_RedactFilter())


class TokenInUrlGuard:
    """ASGI middleware: a request with a token in its query string gets 400.

    Tokens in URLs end up in proxy and access logs; they are accepted only in the
    ``Authorization`` header.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("query_string"):
            query = scope["query_string"].decode("latin-1")
            if _has_secret(query):
                body = json.dumps(
                    {
                        "detail": "tokens are not accepted in the URL; send "
                        "'Authorization: Bearer <token>' (and treat this token as exposed)"
                    }
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 400,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
