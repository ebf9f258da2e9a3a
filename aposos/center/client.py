"""HTTP client of the data-center API: used by ``aposos query`` and station agents.

>>> with CenterClient("http://127.0.0.1:8600", read_token_file("~/.config/aposos/token")) as c:
...     page = c.tracklets(station="IRN1", since="2026-11-22T00:00:00Z")  # doctest: +SKIP

Errors arrive as :class:`CenterError` with the HTTP status (0 when the center could
not be reached) and the server's one-line message. The token goes only into the
``Authorization`` header; it is never part of a URL or a message.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

import httpx

from aposos.model import Tracklet

__all__ = ["CenterClient", "CenterError", "read_token_file"]

API = "/api/v1"


class CenterError(Exception):
    """An error answer from the center (``status`` 0: no answer at all)."""

    def __init__(self, status: int, message: str, errors: list[str] | None = None):
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message
        self.errors = errors or []


def read_token_file(path: str | os.PathLike) -> str:
    """The token stored in a file (surrounding whitespace removed)."""
    path = Path(path).expanduser()
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise FileNotFoundError(f"no token file at {path}") from None
    if not token:
        raise ValueError(f"token file {path} is empty")
    return token


def _params(filters: dict) -> dict:
    out = {}
    for key, value in filters.items():
        if value is None:
            continue
        if isinstance(value, datetime):
            value = value.isoformat()
        out[key] = value
    return out


class CenterClient:
    """A connection to the data center.

    Parameters
    ----------
    url : base URL, e.g. ``http://127.0.0.1:8600``.
    token : access token (station, analyst or admin).
    timeout : seconds per request.
    ca_file : a CA certificate (PEM) to verify the center's HTTPS certificate with,
        instead of the system's certificate authorities.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        ca_file: str | os.PathLike | None = None,
    ):
        self.url = url.rstrip("/")
        headers = {"User-Agent": "aposos-client"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        verify = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, verify=verify
        )

    def __enter__(self) -> CenterClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CenterClient({self.url!r})"

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise CenterError(0, f"cannot reach the center at {self.url}: {exc}") from None
        if response.status_code >= 400:
            message, errors = response.reason_phrase, None
            try:
                body = response.json()
                message = body.get("detail", message)
                errors = body.get("errors")
            except (ValueError, AttributeError):
                pass
            raise CenterError(response.status_code, str(message), errors)
        return response

    # -- stations

    def upload_tracklets(self, tracklets: Sequence[Tracklet | dict]) -> dict:
        """Upload tracklets (objects or wire dicts); idempotent on their UUIDs."""
        wire = [t.to_wire() if isinstance(t, Tracklet) else t for t in tracklets]
        body = json.dumps(wire).encode("utf-8")
        return self._request(
            "POST",
            f"{API}/tracklets",
            content=body,
            headers={"Content-Type": "application/json"},
        ).json()

    def upload_tdm(self, text: str) -> dict:
        """Upload a CCSDS TDM document (KVN or XML)."""
        ctype = "application/xml" if text.lstrip().startswith("<") else "text/plain"
        return self._request(
            "POST",
            f"{API}/tracklets",
            content=text.encode("utf-8"),
            headers={"Content-Type": ctype},
        ).json()

    def heartbeat(
        self,
        code: str,
        *,
        outbox_backlog: int | None = None,
        agent_version: str | None = None,
        **extra,
    ) -> dict:
        """Tell the center the station is alive, with its outbox backlog."""
        body = {"outbox_backlog": outbox_backlog, "agent_version": agent_version, **extra}
        return self._request("POST", f"{API}/stations/{code}/heartbeat", json=body).json()

    # -- queries

    def tracklets(self, **filters) -> dict:
        """One page of tracklets (station, since, until, status, limit, offset)."""
        return self._request("GET", f"{API}/tracklets", params=_params(filters)).json()

    def tracklet(self, key: int | str) -> dict:
        """One tracklet by id or UUID, with observations and correlation."""
        return self._request("GET", f"{API}/tracklets/{key}").json()

    def correlations(self, **filters) -> dict:
        """One page of correlations (norad_id, status, station, since, until)."""
        return self._request("GET", f"{API}/correlations", params=_params(filters)).json()

    def uct(self, **filters) -> dict:
        """One page of uncorrelated tracklets."""
        return self._request("GET", f"{API}/uct", params=_params(filters)).json()

    def stations(self, **filters) -> dict:
        return self._request("GET", f"{API}/stations", params=_params(filters)).json()

    def object(self, norad_id: int, **filters) -> dict:
        """An object's observations and residual history."""
        return self._request(
            "GET", f"{API}/objects/{int(norad_id)}", params=_params(filters)
        ).json()

    def pages(self, kind: str, *args, **filters) -> Iterator[dict]:
        """Every item of a list, following ``next_offset`` (``kind``: a method name)."""
        fetch = getattr(self, kind)
        offset = filters.pop("offset", 0) or 0
        while True:
            page = fetch(*args, offset=offset, **filters)
            yield from page["items"]
            if page.get("next_offset") is None:
                return
            offset = page["next_offset"]

    def healthz(self) -> dict:
        return self._request("GET", "/healthz").json()

    # -- administration and data sharing

    def put_catalogue(self, source: str | os.PathLike | bytes, name: str | None = None) -> dict:
        """Put a TLE/OMM file (path, plain or xz/gzip/bzip2-compressed, or bytes) as a new
        catalogue snapshot (admin)."""
        if isinstance(source, bytes):
            data, label = source, name or "upload"
        else:
            from aposos.orbit.catalogue import read_maybe_compressed

            # a compressed file (.xz, .gz, .bz2) goes as its text: the center reads text
            data, label = read_maybe_compressed(Path(source)), name or Path(source).name
        return self._request("PUT", f"{API}/catalogue", content=data, params={"name": label}).json()

    def snapshots(self) -> list[dict]:
        return self._request("GET", f"{API}/catalogue").json()["items"]

    def recorrelate(self, **request) -> dict:
        """Queue a time range again (since, until, station, snapshot_id) (admin)."""
        body = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in request.items()}
        return self._request("POST", f"{API}/recorrelate", json=body).json()

    def export(self, format: str = "tdm", **filters) -> str:
        """One page of observations in ``tdm``, ``iod`` or ``csv``."""
        params = _params({"format": format, **filters})
        return self._request("GET", f"{API}/export", params=params).text

    # -- tasking

    def tasks(self, **filters) -> dict:
        """Current tasks: ``{"generated", "tasks"}`` (station, since, until, night)."""
        return self._request("GET", f"{API}/tasks", params=_params(filters)).json()

    def report_task(self, task_id: str, status: str, *, frames: int = 0, tracklets: int = 0,
                    reason: str | None = None) -> dict:  # fmt: skip
        """Tell the center what was done with a task (executed, skipped, failed)."""
        body = {"status": status, "frames": frames, "tracklets": tracklets, "reason": reason}
        return self._request("POST", f"{API}/tasks/{task_id}/report", json=body).json()

    def add_request(self, **request) -> dict:
        """Ask for observations (analyst): kind, norad_id or ra_deg/dec_deg, start, end, ..."""
        return self._request("POST", f"{API}/requests", json=request).json()
