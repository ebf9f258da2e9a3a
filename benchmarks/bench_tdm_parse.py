"""Benchmark of TDM reading at the center: time must grow linearly with size.

Three kinds of document, each at 0.25, 0.5, 1 and 2 MB:

- ``xml-chardata``: an XML TDM whose metadata COMMENT holds the bulk as character data
  in many lines (what used to take 2 / 9 / 29 s at 0.25 / 0.5 / 1 MB: quadratic);
- ``xml-entities``: the same, the bulk made of ``&amp;`` (one parser call each);
- ``xml-observations``: an XML TDM with that many bytes of observations;
- ``kvn-observations``: the same in KVN.

Baseline, run first in the same process: the 0.25 MB document of each kind. For each
size the ratio (time per MB) / (baseline time per MB) is printed: about 1 means
linear, about the size ratio would mean quadratic. Last, the 294-byte "billion
laughs" body (refused at once: no DTD is read).

    .venv/bin/python benchmarks/bench_tdm_parse.py
"""

from __future__ import annotations

import sys
import time

import numpy as np

from aposos.center.ingest import parse_upload
from aposos.formats.tdm import write_tdm
from aposos.model import Tracklet

SIZES_MB = (0.25, 0.5, 1.0, 2.0)
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<tdm>&lol4;</tdm>"""


def tracklet(seed: int, n: int) -> Tracklet:
    rng = np.random.default_rng(seed)
    utc = np.datetime64("2020-10-01T18:00:00", "us") + (np.arange(n) * 2e6).astype(
        "timedelta64[us]"
    )
    return Tracklet(
        "IRN1", utc, rng.uniform(0, 360) + 0.01 * np.arange(n), 10 + 0.01 * np.arange(n)
    )


def chardata_doc(megabytes: float) -> bytes:
    text = write_tdm([tracklet(1, 5)], format="xml")
    filler = "x" * 70 + "\n"
    bulk = filler * int(megabytes * 1e6 / len(filler))
    return text.replace("<COMMENT>", "<COMMENT>" + bulk, 1).encode()


def entities_doc(megabytes: float) -> bytes:
    text = write_tdm([tracklet(1, 5)], format="xml")
    return text.replace("<COMMENT>", "<COMMENT>" + "&amp;" * int(megabytes * 2e5), 1).encode()


def observations_doc(megabytes: float, fmt: str) -> bytes:
    one = len(write_tdm([tracklet(0, 100)], format=fmt))
    n_segments = max(1, int(megabytes * 1e6 / one))
    return write_tdm([tracklet(k, 100) for k in range(n_segments)], format=fmt).encode()


def timed(body: bytes, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        parse_upload(body, time_budget_s=60.0)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    kinds = {
        "xml-chardata": chardata_doc,
        "xml-entities": entities_doc,
        "xml-observations": lambda mb: observations_doc(mb, "xml"),
        "kvn-observations": lambda mb: observations_doc(mb, "kvn"),
    }
    worst = 0.0
    for name, make in kinds.items():
        docs = [make(mb) for mb in SIZES_MB]
        base_doc = docs[0]
        base_s = timed(base_doc)  # the baseline: smallest size, same process
        base_per_mb = base_s / (len(base_doc) / 1e6)
        print(f"{name}: baseline {len(base_doc) / 1e6:.2f} MB in {base_s * 1e3:.1f} ms")
        for doc in docs:
            s = timed(doc)
            per_mb = s / (len(doc) / 1e6)
            ratio = per_mb / base_per_mb
            worst = max(worst, ratio)
            print(
                f"  {len(doc) / 1e6:5.2f} MB  {s * 1e3:8.1f} ms  {per_mb * 1e3:7.1f} ms/MB  "
                f"ratio to baseline {ratio:4.2f} (size ratio {len(doc) / len(base_doc):4.1f})"
            )
    t0 = time.perf_counter()
    answer = parse_upload(BILLION_LAUGHS)
    laughs = time.perf_counter() - t0
    print(
        f"billion laughs ({len(BILLION_LAUGHS)} bytes): {laughs * 1e3:.2f} ms, {answer.errors[0]}"
    )
    print(f"worst time-per-MB ratio to baseline: {worst:.2f} (1 = linear)")
    return 0 if worst < 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
