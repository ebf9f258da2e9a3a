"""The station's night-quality figures (what its heartbeats carry) against the simulator's
truth: FWHM against the seeing, limiting magnitude, and sky brightness against the
simulator's sky at the frame's air mass.

Not a speed benchmark: an accuracy check on a simulated night, reduced as usual::

    aposos station simulate --station stations/peru.toml --catalog CAT --start ... \\
        --minutes 2 --out night/frames --mode mixed
    aposos station reduce night/frames/lights --station stations/peru.toml \\
        --calib night/frames/calib --out night/reduced
    python benchmarks/quality_against_truth.py night

The sky is measured against the frame's own stars (extinction not removed), so it
should read brighter by the extinction, k times the air mass.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from aposos.station.quality import frame_quality


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("night", type=Path, help="folder with frames/truth.json and reduced/")
    night = parser.parse_args().night
    truth = {
        f["file"]: f for f in json.loads((night / "frames" / "truth.json").read_text())["frames"]
    }
    frames = json.loads((night / "reduced" / "reduction.json").read_text())["frames"]
    diffs: dict[str, list[float]] = {
        "FWHM (arcsec)": [],
        "limiting mag": [],
        "sky (mag/arcsec2)": [],
    }
    for f in frames:
        if f.get("status") != "solved":
            continue
        name = Path(f["file"]).name
        t = truth.get(name) or next(v for k, v in truth.items() if k.endswith(name))
        fwhm, lim, sky = frame_quality(f)
        sky_at_airmass = t["sky_mag_arcsec2"] - 2.5 * math.log10(t["airmass"])
        for key, measured, true in (
            ("FWHM (arcsec)", fwhm, t["seeing_fwhm_arcsec"]),
            ("limiting mag", lim, t["limiting_mag"]),
            ("sky (mag/arcsec2)", sky, sky_at_airmass),
        ):
            if measured is not None:
                diffs[key].append(measured - true)
    for key, d in diffs.items():
        if d:
            print(f"{key}: {len(d)} frames, median measured - truth {statistics.median(d):+.2f}, "
                  f"spread {max(d) - min(d):.2f}")  # fmt: skip
        else:
            print(f"{key}: no frame")


if __name__ == "__main__":
    main()
