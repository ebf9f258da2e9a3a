"""How much of an element set's along-track error its catalogue history predicts.

A data center that correlates a night against snapshot ``S`` also holds the snapshot
``P`` before it. For every object in ``P``, ``S`` and a newer snapshot ``N``:

- ``tau``: the true time offset of the object (``N``'s element set at its epoch) against
  ``S``'s prediction (s, > 0: ahead), what a tracklet shows;
- ``h = tau_P (age / age_P)^2``: the offset ``S`` showed against ``P``'s prediction at
  ``S``'s epoch, carried on as a steady along-track acceleration over ``S``'s age at
  ``N``'s epoch (``age``).

Printed per triplet, for Starlink, OneWeb and the other LEO objects: among the objects at
risk of being taken for a launch mate (``|tau| >= 10 s``, Starlink mates fly 20-60 s
apart), the share the best gain ``g`` brings within 10 s (``|tau - g h| < 10``), the
median ``|tau|`` before and ``|tau - g h|`` after, and their correlation; then, over
pairs of LEO launch mates in one plane where one is at risk and the other quiet
(``|tau| < 3 s``), how often each predictor ranks the one at risk as the more active:
the error model's activity (``train_drift_s``), the element set's own ``n_dot`` drift
and ``|h|`` (0.5 for a tie). For Starlink, how far the objects at risk are from their
plane mates' median true offset (an oracle no history gives: the train's own drift
known exactly). Across track: the correlation of the offset along the
orbit normal with the one ``S`` showed against ``P``, grown linearly with age.

    .venv/bin/python benchmarks/bench_history.py [--triplets 17:18:19 18:19:23 16:17:23]

Default triplets: the fitting pairs of issue 9 that have a snapshot before them
(18-19, 19-23, 17-23), each with the snapshot before its older one.

Measured (December 2026): among Starlink objects at risk the best gain brings 41 % within
10 s at one day (median |tau| 16 -> 12 s), 28 % at four days, 19 % at six, correlation
-0.07 to 0.31; across track, correlation 0.14 or less; even the plane mates' true median
offset leaves them a median 10-13 s off, 42-51 % within 10 s; ``|h|`` ranks the mate at risk
higher 72-75 % of the time, the model's activity already 75-80 %. A mixture component
built on ``h`` and fitted by EM (commit 6c4ab52 of branch f-wt9m, reverted) became a
narrow core for steady objects, +0.14 nat per LEO error, and changed identification by
noise: held out +2 right and -1 confidently wrong of 8,000 tracklets in one fit, -8 right
on the fitting pair 17-23 in another.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from aposos.correlate.errors import element_set_errors, launch_index
from aposos.orbit.catalogue import Catalogue

SERIES = Path(__file__).resolve().parent.parent / "tests" / "data" / "shared" / "catalogues"
DEFAULT_TRIPLETS = ("17:18:19", "18:19:23", "16:17:23")
AT_RISK_S = 10.0
QUIET_S = 3.0
LOST_S = 1200.0


def snapshot(day: str) -> Catalogue:
    return Catalogue.from_tle(SERIES / f"celestrak-active-2026-03-{int(day):02d}.3le.xz")


def predicted_offsets(previous, older, newer):
    """``older``'s errors at ``newer``'s epochs, ``h`` per error (NaN: no history), the
    offset along the orbit normal the history predicts (``P``'s against ``S`` at ``S``'s
    epoch, grown linearly with age) and the rows of ``older`` the errors belong to."""
    errors = element_set_errors(older, newer, previous=previous)
    past = element_set_errors(previous, older)
    rate = np.full(errors.norad_id.size, np.nan)
    normal = np.full(errors.norad_id.size, np.nan)
    _, i_now, i_past = np.intersect1d(errors.norad_id, past.norad_id, return_indices=True)
    steady = np.abs(past.tau_s[i_past]) <= LOST_S
    now, then = i_now[steady], i_past[steady]
    rate[now] = past.tau_s[then] / past.age_days[then] ** 2
    normal[now] = past.normal_km[then] / past.age_days[then] * errors.age_days[now]
    order = np.argsort(older.norad_id)
    rows = order[np.searchsorted(older.norad_id[order], errors.norad_id)]
    return errors, rate * errors.age_days**2, normal, rows


def gain_table(label, tau, h) -> str:
    risk = np.abs(tau) >= AT_RISK_S
    if risk.sum() < 5:
        return f"    {label}: {tau.size} objects, {risk.sum()} at risk"
    t, p = tau[risk], h[risk]
    gains = np.linspace(0.0, 1.5, 31)
    within = [np.mean(np.abs(t - g * p) < AT_RISK_S) for g in gains]
    g = gains[int(np.argmax(within))]
    return (
        f"    {label}: {tau.size} objects, {risk.sum()} at risk (|tau| >= {AT_RISK_S:.0f} s); "
        f"best gain {g:.2f} brings {max(within):.1%} of them within {AT_RISK_S:.0f} s; "
        f"median |tau| {np.median(np.abs(t)):.0f} s -> |tau - g h| "
        f"{np.median(np.abs(t - g * p)):.0f} s; correlation {np.corrcoef(t, p)[0, 1]:.2f}"
    )


def _plane_groups(errors, rows, older, ok):
    """Per launch with objects in ``ok``: those objects and which of them share a plane
    (within 0.1 rev/day and 2 deg of node), the diagonal left out."""
    launch = launch_index(older.intl_designator)[rows]
    rev = older.mean_motion_rev_per_day[rows]
    raan = np.asarray(older.raan_deg)[rows]
    idx = np.flatnonzero(ok & (launch >= 0))
    for key in np.unique(launch[idx]):
        g = idx[launch[idx] == key]
        node = np.abs((raan[g][:, None] - raan[g][None, :] + 180.0) % 360.0 - 180.0)
        near = (np.abs(rev[g][:, None] - rev[g][None, :]) <= 0.1) & (node <= 2.0)
        np.fill_diagonal(near, False)
        yield g, near


def common_mode(errors, rows, older, ok) -> str:
    """How far the objects at risk are from their plane mates' median true offset
    tonight (three mates or more): what knowing the train's drift exactly would leave."""
    centre = np.full(errors.tau_s.size, np.nan)
    for g, near in _plane_groups(errors, rows, older, ok):
        for a in np.flatnonzero(near.sum(axis=1) >= 3):
            centre[g[a]] = np.median(errors.tau_s[g[near[a]]])
    risk = ok & (np.abs(errors.tau_s) >= AT_RISK_S) & np.isfinite(centre)
    if risk.sum() < 5:
        return "      plane mates' true median offset: too few objects at risk"
    t, c = errors.tau_s[risk], centre[risk]
    return (
        f"      {risk.sum()} at risk with 3+ plane mates: |tau| median {np.median(np.abs(t)):.0f} s;"
        f" around the mates' true median offset {np.median(np.abs(t - c)):.0f} s, "
        f"{np.mean(np.abs(t - c) < AT_RISK_S):.0%} within {AT_RISK_S:.0f} s"
    )


def mate_ranking(errors, h, rows, older) -> str:
    """Over (at risk, quiet) pairs of LEO launch mates in one plane: how often each
    predictor ranks the one at risk higher."""
    ok = (errors.orbit_class == "LEO") & np.isfinite(h) & (np.abs(errors.tau_s) < LOST_S)
    risk = np.abs(errors.tau_s) >= AT_RISK_S
    quiet = np.abs(errors.tau_s) < QUIET_S
    predictors = {
        "the model's activity": errors.train_drift_s,
        "own n_dot drift": np.abs(errors.drift_s),
        "history |h|": np.abs(np.nan_to_num(h)),
    }
    wins = {k: [] for k in predictors}
    for g, near in _plane_groups(errors, rows, older, ok):
        a, b = np.nonzero(near & risk[g][:, None] & quiet[g][None, :])
        for name, value in predictors.items():
            va, vb = value[g][a], value[g][b]
            wins[name] += np.where(va > vb, 1.0, np.where(va == vb, 0.5, 0.0)).tolist()
    n = len(wins["history |h|"])
    shares = ", ".join(f"{k} {np.mean(v):.3f}" for k, v in wins.items()) if n else "none"
    return f"    LEO mate pairs (at risk, quiet): {n}; ranked right by {shares}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triplets", nargs="*", default=list(DEFAULT_TRIPLETS))
    args = parser.parse_args(argv)
    cache: dict[str, Catalogue] = {}
    for triplet in args.triplets:
        days = triplet.split(":")
        for d in days:
            if d not in cache:
                cache[d] = snapshot(d)
        previous, older, newer = (cache[d] for d in days)
        errors, h, normal, rows = predicted_offsets(previous, older, newer)
        names = np.char.upper(np.array([str(x) for x in older.name])[rows])
        starlink = np.char.startswith(names, "STARLINK")
        oneweb = np.char.startswith(names, "ONEWEB")
        ok = np.isfinite(h) & (np.abs(errors.tau_s) < LOST_S)
        print(
            f"older 2026-03-{days[1]}, newer -{days[2]}, history -{days[0]}: median age "
            f"{np.median(errors.age_days):.2f} d"
        )
        leo = errors.orbit_class == "LEO"
        for label, sel in (("Starlink", starlink), ("OneWeb", oneweb),
                           ("other LEO", leo & ~starlink & ~oneweb)):  # fmt: skip
            print(gain_table(label, errors.tau_s[sel & ok], h[sel & ok]))
            off = sel & ok & (np.abs(errors.normal_km) > 0.5)
            if off.sum() >= 5:
                r = np.corrcoef(errors.normal_km[off], normal[off])[0, 1]
                print(f"      across track (|normal| > 0.5 km, {off.sum()}): correlation {r:.2f}")
            if label == "Starlink":
                print(common_mode(errors, rows, older, sel & ok))
        print(mate_ranking(errors, h, rows, older))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
