"""A realistic 25,000-object catalogue for benchmarks.

The real CelesTrak snapshot (3,034 payloads: LEO, MEO, GEO, HEO) is replicated with the
right ascension of the node and the mean anomaly turned by random angles and new
catalogue numbers, so the orbit-class mix, eccentricities, drag terms and epochs stay
those of real element sets. Written through TLE text so python-sgp4 and aposos read the
very same elements.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sgp4.exporter import compute_checksum

HERE = Path(__file__).resolve().parent
SNAPSHOT = (
    HERE.parent / "tests" / "data" / "shared" / "catalogues" / "celestrak-active-2020-10-02.3le"
)


def _alpha5(number: int) -> str:
    if number < 100000:
        return f"{number:05d}"
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # Alpha-5 skips I and O
    head, tail = divmod(number, 10000)
    return f"{letters[head - 10]}{tail:04d}"


def _fix(line: str) -> str:
    return line[:68] + str(compute_checksum(line[:68]))


def realistic_tle_lines(n_objects: int = 25_000, seed: int = 42) -> list[str]:
    """3-line element sets: the real snapshot, then turned copies up to ``n_objects``."""
    lines = SNAPSHOT.read_text().splitlines()
    names, l1s, l2s = lines[0::3], lines[1::3], lines[2::3]
    rng = np.random.default_rng(seed)
    out: list[str] = []
    for k in range(n_objects):
        src = k % len(l1s)
        if k < len(l1s):
            out += [names[src], l1s[src], l2s[src]]
            continue
        number = _alpha5(80000 + k)
        node = (float(l2s[src][17:25]) + rng.uniform(0, 360)) % 360
        anomaly = (float(l2s[src][43:51]) + rng.uniform(0, 360)) % 360
        line1 = _fix(l1s[src][:2] + number + l1s[src][7:])
        line2 = l2s[src][:2] + number + l2s[src][7:17] + f"{node:8.4f}" + l2s[src][25:43]
        line2 = _fix(line2 + f"{anomaly:8.4f}" + l2s[src][51:])
        out += [f"{names[src]} COPY", line1, line2]
    return out
