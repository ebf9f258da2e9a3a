"""Camera and mount through INDI: a small client of the INDI XML protocol, and a source.

Why INDI (and not ASCOM Alpaca): INDI is what observatory Linux machines run; Debian
ships the INDI server with real CCD and telescope simulator drivers (``indi-bin``), so
the tests drive real device drivers offline; Alpaca's simulators are .NET programs
outside Debian. Licence: the INDI library and drivers are (L)GPL, so nothing of them
is imported or linked here: this module speaks INDI's documented XML protocol over a
TCP socket to ``indiserver``, a separate process. Only the standard library is used.

The protocol in brief: the client sends ``<getProperties version="1.7"/>``; the server
answers with ``def*Vector`` elements (properties and their values) and later
``set*Vector`` updates, each with a ``state`` (Idle, Ok, Busy, Alert). The client
changes a property with ``new*Vector``. Images come as ``setBLOBVector`` with the
FITS file in base64 once ``<enableBLOB>Also</enableBLOB>`` was sent.
"""

from __future__ import annotations

import base64
import logging
import socket
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from aposos.station.sources import Captured, starts_new_field

__all__ = ["IndiClient", "IndiError", "IndiSource", "icrs_to_date"]

log = logging.getLogger(__name__)


class IndiError(RuntimeError):
    """The INDI server or a device did not do what was asked."""


@dataclass
class Vector:
    """One INDI property: its kind, state and member values (as text)."""

    device: str
    name: str
    kind: str  # Number | Switch | Text | Light | BLOB
    state: str = "Idle"
    values: dict[str, str] = field(default_factory=dict)


class IndiClient:
    """A connection to ``indiserver`` keeping the latest value of every property."""

    def __init__(self, host: str = "127.0.0.1", port: int = 7624, *, timeout_s: float = 30.0):
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.vectors: dict[tuple[str, str], Vector] = {}
        self.blobs: list[tuple[str, str, bytes, str]] = []  # device, name, data, format
        self.messages: list[str] = []
        self._cond = threading.Condition()
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._closed = False
        self.error: str | None = None

    # ------------------------------------------------------------------ connection
    def connect(self) -> IndiClient:
        try:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        except OSError as exc:
            raise IndiError(f"no INDI server at {self.host}:{self.port}: {exc}") from None
        self._sock.settimeout(None)
        self._reader = threading.Thread(target=self._read, name="indi-reader", daemon=True)
        self._reader.start()
        self.send('<getProperties version="1.7"/>')
        return self

    def close(self) -> None:
        self._closed = True
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()

    def send(self, xml: str) -> None:
        if self._sock is None:
            raise IndiError("not connected to the INDI server")
        try:
            self._sock.sendall(xml.encode("utf-8"))
        except OSError as exc:
            raise IndiError(f"INDI server connection lost: {exc}") from None

    def _read(self) -> None:
        parser = ET.XMLPullParser(events=("start", "end"))
        parser.feed("<stream>")
        depth = 0
        try:
            while not self._closed:
                chunk = self._sock.recv(1 << 20)
                if not chunk:
                    break
                parser.feed(chunk)
                for event, elem in parser.read_events():
                    if event == "start":
                        depth += 1
                        continue
                    depth -= 1
                    if depth == 1:
                        self._handle(elem)
                        elem.clear()
        except (OSError, ET.ParseError) as exc:
            if not self._closed:
                self.error = f"INDI stream broken: {exc}"
        with self._cond:
            if not self._closed and self.error is None:
                self.error = "the INDI server closed the connection"
            self._cond.notify_all()

    def _handle(self, elem: ET.Element) -> None:
        tag = elem.tag
        device, name = elem.get("device", ""), elem.get("name", "")
        if tag == "message" or elem.get("message"):
            text = f"{device}: {elem.get('message')}"
            self.messages.append(text)
            log.debug("INDI %s", text)
        if tag == "delProperty":
            with self._cond:
                for key in [k for k in self.vectors if k[0] == device and name in ("", k[1])]:
                    del self.vectors[key]
            return
        for prefix in ("def", "set"):
            if tag.startswith(prefix) and tag.endswith("Vector"):
                kind = tag[len(prefix) : -len("Vector")]
                break
        else:
            return
        with self._cond:
            vec = self.vectors.get((device, name))
            if vec is None:
                vec = self.vectors[(device, name)] = Vector(device, name, kind)
            vec.state = elem.get("state", vec.state)
            for member in elem:
                mname = member.get("name", "")
                if kind == "BLOB":
                    text = (member.text or "").strip()
                    if text:
                        self.blobs.append((device, mname, base64.b64decode(text),
                                           member.get("format", "")))  # fmt: skip
                    continue
                vec.values[mname] = (member.text or "").strip()
            self._cond.notify_all()

    # ------------------------------------------------------------------ properties
    def wait(self, predicate, timeout_s: float | None = None, what: str = "the device"):
        """Wait until ``predicate()`` (called under the lock) is truthy; returns it."""
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        with self._cond:
            while True:
                value = predicate()
                if value:
                    return value
                if self.error:
                    raise IndiError(self.error)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise IndiError(f"timed out after {timeout_s or self.timeout_s:g} s "
                                    f"waiting for {what}")  # fmt: skip
                self._cond.wait(min(left, 0.5))

    def vector(self, device: str, name: str, timeout_s: float | None = None) -> Vector:
        return self.wait(lambda: self.vectors.get((device, name)), timeout_s,
                         f"property {device}.{name}")  # fmt: skip

    def set_vector(self, device: str, name: str, kind: str, values: dict) -> None:
        members = "".join(
            f"<one{kind} name={quoteattr(k)}>{escape(str(v))}</one{kind}>"
            for k, v in values.items()
        )
        with self._cond:
            vec = self.vectors.get((device, name))
            if vec is not None:
                vec.state = "Busy"  # until the device says otherwise
        self.send(f"<new{kind}Vector device={quoteattr(device)} name={quoteattr(name)}>"
                  f"{members}</new{kind}Vector>")  # fmt: skip

    def wait_state(self, device: str, name: str, timeout_s: float | None = None) -> Vector:
        """Wait until a property leaves Busy; raise if it ends in Alert."""
        vec = self.wait(
            lambda: (v := self.vectors.get((device, name))) and v.state != "Busy" and v,
            timeout_s, f"{device}.{name} to finish",
        )  # fmt: skip
        if vec.state == "Alert":
            last = self.messages[-1] if self.messages else ""
            raise IndiError(f"{device}.{name} failed (Alert) {last}".strip())
        return vec

    def connect_device(self, device: str) -> None:
        vec = self.vector(device, "CONNECTION")
        if vec.values.get("CONNECT") == "On":
            return
        self.set_vector(device, "CONNECTION", "Switch", {"CONNECT": "On", "DISCONNECT": "Off"})
        self.wait(lambda: self.vectors[(device, "CONNECTION")].values.get("CONNECT") == "On",
                  what=f"{device} to connect")  # fmt: skip


def icrs_to_date(ra_deg: float, dec_deg: float, utc: np.datetime64) -> tuple[float, float]:
    """ICRS RA/Dec to the true equator and equinox of date (INDI's "EOD" coordinates)."""
    import erfa

    from aposos.model import datetime64_to_jd_fr

    jd, fr = datetime64_to_jd_fr(np.array([utc]))
    m = erfa.pnm06a(jd[0], fr[0] + 69.184 / 86400.0)  # TT ~ UTC + 69 s: plenty for pointing
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    v = m @ np.array([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
    return float(np.degrees(np.arctan2(v[1], v[0])) % 360.0), float(np.degrees(np.arcsin(v[2])))


class IndiSource:
    """Frames from an INDI camera, pointed by an INDI mount.

    With a task, the mount goes to the task's RA/Dec (tracking sidereal); without one it
    visits the configured survey fields in turn, ``visit_frames`` frames each. Frames
    are saved in ``incoming/`` as the camera sent them (FITS).
    """

    kind = "indi"
    can_point = True

    def __init__(self, station, settings, incoming: Path, *, client: IndiClient | None = None):
        self.station = station
        self.settings = settings
        self.incoming = Path(incoming)
        self.client = client
        self.exhausted = False
        self.index = 0
        self._target: tuple[float, float] | None = None
        self._field = 0
        self._in_field = 0
        self._next_at = 0.0

    def now(self) -> np.datetime64:
        return np.datetime64("now", "us")

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    def _ready(self) -> IndiClient:
        if self.client is None:
            s = self.settings
            c = IndiClient(s.host, s.port, timeout_s=s.timeout_s).connect()
            for device in (s.mount, s.camera):
                c.connect_device(device)
            site = self.station.site_info
            if (s.mount, "GEOGRAPHIC_COORD") in c.vectors:
                c.set_vector(s.mount, "GEOGRAPHIC_COORD", "Number", {
                    "LAT": site.latitude_deg, "LONG": site.longitude_deg % 360.0,
                    "ELEV": site.altitude_m,
                })  # fmt: skip
            c.send(f"<enableBLOB device={quoteattr(s.camera)}>Also</enableBLOB>")
            self.client = c
        return self.client

    def point(self, ra_deg: float, dec_deg: float) -> None:
        """Slew the mount and wait until it tracks there."""
        c, mount = self._ready(), self.settings.mount
        c.vector(mount, "ON_COORD_SET")
        c.set_vector(mount, "ON_COORD_SET", "Switch", {"TRACK": "On", "SLEW": "Off", "SYNC": "Off"})
        ra_now, dec_now = icrs_to_date(ra_deg, dec_deg, np.datetime64("now", "us"))
        c.set_vector(mount, "EQUATORIAL_EOD_COORD", "Number",
                     {"RA": ra_now / 15.0, "DEC": dec_now})  # fmt: skip
        c.wait_state(mount, "EQUATORIAL_EOD_COORD", timeout_s=max(120.0, self.settings.timeout_s))
        self._target = (ra_deg, dec_deg)
        log.info("mount at RA %.4f Dec %+.4f", ra_deg, dec_deg)

    def expose(self, exposure_s: float) -> bytes:
        c, cam = self._ready(), self.settings.camera
        c.vector(cam, "CCD_EXPOSURE")
        with c._cond:
            before = len(c.blobs)
        c.set_vector(cam, "CCD_EXPOSURE", "Number", {"CCD_EXPOSURE_VALUE": exposure_s})
        c.wait(lambda: len(c.blobs) > before, exposure_s + self.settings.timeout_s,
               f"an image from {cam}")  # fmt: skip
        with c._cond:
            device, _name, data, fmt = c.blobs.pop()
            c.blobs.clear()
        if not fmt.lower().startswith(".fits"):
            raise IndiError(f"{device} sent a {fmt or 'nameless'} image; set it to FITS")
        return data

    def poll(self, task: dict | None = None) -> Captured | None:
        s = self.settings
        wait = self._next_at - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, 1.0))
            if self._next_at - time.monotonic() > 0:
                return None
        ends = False  # known to be the last frame of this field
        if task is not None:
            target = (float(task["ra_deg"]), float(task["dec_deg"]))
            exposure = float(task.get("exposure_s") or s.exposure_s)
        elif s.fields:
            if self._in_field >= s.visit_frames:
                self._field = (self._field + 1) % len(s.fields)
                self._in_field = 0
            target, exposure = s.fields[self._field], s.exposure_s
            self._in_field += 1
            following = s.fields[(self._field + 1) % len(s.fields)]
            ends = self._in_field >= s.visit_frames and starts_new_field(
                None, target, None, following
            )
        else:
            time.sleep(1.0)
            return None  # nothing to observe: no task and no survey fields
        if self._target != target:
            self.point(*target)
        self._next_at = time.monotonic() + s.cadence_s
        data = self.expose(exposure)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        self.incoming.mkdir(parents=True, exist_ok=True)
        path = self.incoming / f"{self.station.code}_{stamp}_{self.index:06d}.fits"
        tmp = path.with_name("." + path.name)
        tmp.write_bytes(data)
        tmp.replace(path)
        key = f"indi:{stamp}:{self.index:06d}"
        self.index += 1
        from aposos.station.sources import describe

        utc, pointing, kind = describe(path, self.station.camera.time_stamp)
        return Captured(key, path, utc, pointing or target,
                        task_id=task["task_id"] if task else None, image_type=kind,
                        field_ends=ends)  # fmt: skip
