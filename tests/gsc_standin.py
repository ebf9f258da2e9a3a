"""A stand-in for the ``gsc`` program (the HST Guide Star Catalog's query tool) that
INDI's CCD simulator runs to learn which stars to draw.

The simulator calls ``gsc -c RA DEC -r RADIUS -m 0 MAGLIMIT -n MAX`` (RA and Dec in
degrees, the radius in arcminutes) and reads lines of twelve fields
``id ra dec pos_err mag mag_err band class plate origin distance direction``. The GSC
is not packaged by Debian, so the INDI test puts this script on the driver's PATH as
``gsc``: it answers from the project's own star catalogue (Hipparcos + Gaia), which
the simulator then renders through its own optics model.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="gsc")
    ap.add_argument("-c", nargs=2, type=float, required=True, metavar=("RA", "DEC"))
    ap.add_argument("-r", type=float, required=True, help="radius, arcmin")
    ap.add_argument("-m", nargs=2, type=float, default=(0.0, 20.0))
    ap.add_argument("-n", type=int, default=3000)
    args = ap.parse_args(argv)
    log = os.environ.get("GSC_STANDIN_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(" ".join(sys.argv[1:]) + "\n")
    from aposos.station.stars import StarCatalogue

    ra0, dec0 = args.c
    ra, dec, mag = StarCatalogue.load("both").cone(
        ra0 % 360.0, dec0, args.r / 60.0, mag_limit=args.m[1]
    )
    out = ["   GSC-ID       RA         Dec     PosErr  Mag  MagErr B C Plate Or  Dist  Dir"]
    for k, (a, d, m) in enumerate(zip(ra[: args.n], dec[: args.n], mag[: args.n], strict=True)):
        out.append(f"{k + 1:010d} {a:9.5f} {d:+9.5f} {0.2:4.1f} {m:5.2f} {0.2:4.2f} 0 0 "
                   f"XXXX 00 {0.0:5.2f} 0")  # fmt: skip
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
