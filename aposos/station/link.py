"""The station's link to the data center: HTTPS, its certificate verified.

The certificate is checked against the system's certificate authorities, or only
against the CA in ``[center] ca_file`` when one is pinned. A token never crosses a
link in clear: plain ``http://`` is refused except to this machine (loopback).
A station gets its first token with a one-time enrolment code (:func:`enrol`).

>>> client = center_http(StationConfig.load("stations/iran.toml"))  # doctest: +SKIP
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from aposos.station.config import StationConfig

__all__ = ["LinkError", "center_http", "enrol", "tls_verify"]


class LinkError(Exception):
    """The link to the center cannot be made safely, or the center said no."""


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
        raise LinkError(f"{url}: plain http would send the station's token in clear; use https://")
    if ca_file:
        path = Path(ca_file)
        if not path.is_file():
            raise LinkError(f"no CA file at {path}")
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
        raise LinkError(f"cannot reach the center at {url}: {exc}") from None
    if answer.status_code != 200:
        try:
            detail = answer.json().get("detail", answer.reason_phrase)
        except ValueError:
            detail = answer.reason_phrase
        raise LinkError(f"enrolment refused ({answer.status_code}): {detail}")
    got = answer.json()
    if got.get("station") != station.code:
        raise LinkError(f"the code is for station {got.get('station')!r}, not {station.code!r}")
    path = station.token_path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(got["token"] + "\n")
    return path
