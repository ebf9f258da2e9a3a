"""The station's HTTP link to the data center: enrolment, uploads, heartbeats, tasks.

The station does not import the center's code: this is its own small client over
``httpx``, speaking the wire format of :mod:`aposos.model`. The link is HTTPS with the
center's certificate checked against the system's certificate authorities, or only
against the CA in ``[center] ca_file`` when one is pinned; a token never crosses a
link in clear: plain ``http://`` is refused except to this machine (loopback). A
station gets its first token with a one-time enrolment code (:func:`enrol`), then
speaks to the center through :class:`CenterLink`.

Every failure becomes a :class:`LinkError` whose ``kind`` tells the caller what to do:

=========== ==============================================================
``network`` the center could not be reached, or answered 5xx / 429: retry later
``auth``    401 / 403: the token is wrong, revoked or for another station;
            keep the data and retry (slowly) until somebody fixes the token
``refused`` 4xx about the data itself (422, 409, 413): retrying the same
            request cannot help
``missing`` 404 (a center without the endpoint, e.g. no tasking yet)
``known``   409: the center holds a tracklet with this id from an earlier
            reduction of the same frames whose last digits differ
``unsafe``  the link cannot be made safely (plain http to another machine, no CA
            file where one is pinned)
=========== ==============================================================

The token travels only in the ``Authorization`` header and is never logged.

>>> client = center_http(StationConfig.load("stations/iran.toml"))  # doctest: +SKIP
"""

from __future__ import annotations

import ipaddress
import json
import os
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from aposos.station.config import StationConfig

__all__ = ["CenterLink", "LinkError", "center_http", "enrol", "read_token", "tls_verify"]

API = "/api/v1"


class LinkError(Exception):
    """A request that did not succeed; ``kind`` as in the module notes."""

    def __init__(self, kind: str, message: str, status: int | None = None,
                 errors: list[str] | None = None):  # fmt: skip
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.errors = errors or []


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tls_verify(url: str, ca_file: str | os.PathLike | None) -> ssl.SSLContext | bool:
    """What httpx should verify the center with; refuses a token-bearing link in clear."""
    parts = urlsplit(url)
    if parts.scheme == "http" and not _loopback(parts.hostname or ""):
        raise LinkError(
            "unsafe", f"{url}: plain http would send the station's token in clear; use https://"
        )
    if ca_file:
        path = Path(ca_file)
        if not path.is_file():
            raise LinkError("unsafe", f"no CA file at {path}")
        return ssl.create_default_context(cafile=str(path))
    return True


def center_http(station: StationConfig, *, timeout: float = 60.0) -> httpx.Client:
    """An HTTP client for the station's center, with its token when it has one."""
    url = station.center.url.rstrip("/")
    headers = {"User-Agent": "aposos-station"}
    token_path = station.token_path
    if token_path.is_file():
        headers["Authorization"] = f"Bearer {token_path.read_text(encoding='utf-8').strip()}"
    verify = tls_verify(url, station.ca_path)
    return httpx.Client(base_url=url, headers=headers, verify=verify, timeout=timeout)


def enrol(station: StationConfig, code: str) -> Path:
    """Trade a one-time enrolment code for the station's token; writes the token
    file (mode 600) and returns its path."""
    url = station.center.url.rstrip("/")
    verify = tls_verify(url, station.ca_path)
    try:
        with httpx.Client(base_url=url, verify=verify, timeout=60) as http:
            answer = http.post("/api/v1/enrol", json={"code": code})
    except httpx.TransportError as exc:
        raise LinkError("network", f"cannot reach the center at {url}: {exc}") from None
    if answer.status_code != 200:
        try:
            detail = answer.json().get("detail", answer.reason_phrase)
        except ValueError:
            detail = answer.reason_phrase
        kind = "auth" if answer.status_code in (401, 403) else "refused"
        raise LinkError(kind, f"enrolment refused ({answer.status_code}): {detail}",
                        answer.status_code)  # fmt: skip
    got = answer.json()
    if got.get("station") != station.code:
        raise LinkError(
            "refused", f"the code is for station {got.get('station')!r}, not {station.code!r}"
        )
    path = station.token_path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(got["token"] + "\n")
    return path


def read_token(path: str | Path) -> str:
    """The token in a file (whitespace stripped); ``ValueError`` if missing or empty."""
    path = Path(path).expanduser()
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read the token file {path}: {exc.strerror}") from None
    if not token:
        raise ValueError(f"token file {path} is empty")
    return token


class CenterLink:
    """Requests to one data center as one station.

    Parameters
    ----------
    url : the center's base URL (``[center] url``).
    station : the station code.
    token_path : the token file; read again for every request, so a fixed token is
        picked up without a restart.
    timeout_s : per request.
    ca_file : a CA to pin for the HTTPS link (``[center] ca_file``); plain ``http://`` is
        refused except to this machine (:func:`tls_verify`).
    """

    def __init__(self, url: str, station: str, token_path: Path, *, timeout_s: float = 30.0,
                 ca_file: Path | None = None):  # fmt: skip
        self.url = url.rstrip("/")
        self.station = station
        self.token_path = Path(token_path)
        try:
            verify = tls_verify(self.url, ca_file)
        except LinkError as exc:
            raise ValueError(str(exc)) from None
        headers = {"User-Agent": "aposos-station-agent"}
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s, verify=verify,
                                  headers=headers)  # fmt: skip

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"CenterLink({self.url!r}, {self.station!r})"

    def _request(self, method: str, path: str, **kwargs) -> dict:
        try:
            token = read_token(self.token_path)
        except ValueError as exc:
            raise LinkError("auth", str(exc)) from None
        headers = {"Authorization": f"Bearer {token}"}
        if "content" in kwargs:
            headers["Content-Type"] = "application/json"
        try:
            r = self._http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise LinkError(
                "network", f"center {self.url} not reachable: {type(exc).__name__}: {exc}"
            ) from None
        if r.status_code < 300:
            try:
                return r.json() if r.content else {}
            except ValueError:
                raise LinkError("network", f"{method} {path}: answer is not JSON") from None
        try:
            doc = r.json()
        except ValueError:
            doc = {}
        detail = doc.get("detail") if isinstance(doc, dict) else None
        detail = detail or r.text[:200] or r.reason_phrase
        message = f"{method} {path}: HTTP {r.status_code}: {detail}"
        if r.status_code in (401, 403):
            kind = "auth"
        elif r.status_code == 404:
            kind = "missing"
        elif r.status_code == 409 and "with different content" in detail:
            kind = "known"  # this id is stored already, from another reduction
        elif r.status_code == 429 or r.status_code >= 500:
            kind = "network"
        else:
            kind = "refused"
        errors = doc.get("errors") if isinstance(doc, dict) else None
        raise LinkError(kind, message, r.status_code, errors if isinstance(errors, list) else None)

    def upload(self, tracklets: list[dict]) -> dict:
        """POST tracklets (wire dicts); the center's answer (``stored``, ``duplicates``,
        ``tracklets``: per record ``uuid`` and ``new``)."""
        body = json.dumps(tracklets, allow_nan=False).encode()
        return self._request("POST", f"{API}/tracklets", content=body)

    def heartbeat(self, doc: dict) -> dict:
        return self._request("POST", f"{API}/stations/{self.station}/heartbeat", json=doc)

    def tasks(self, since_iso: str | None = None) -> list[dict]:
        """The station's tasks; ``[]`` from a center without tasking (404)."""
        params = {"station": self.station}
        if since_iso:
            params["since"] = since_iso
        try:
            doc = self._request("GET", f"{API}/tasks", params=params)
        except LinkError as exc:
            if exc.kind == "missing":
                return []
            raise
        tasks = doc.get("tasks") if isinstance(doc, dict) else None
        if not isinstance(tasks, list):
            raise LinkError("refused", "GET /api/v1/tasks: answer has no 'tasks' list")
        return [t for t in tasks if isinstance(t, dict) and "task_id" in t]

    def report(self, task_id: str, doc: dict) -> dict:
        return self._request("POST", f"{API}/tasks/{task_id}/report", json=doc)
