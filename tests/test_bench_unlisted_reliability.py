"""The benchmark's reliability table of 'not in the catalogue', weighted to the sky's
share of absent objects (the benchmark observes every one of them)."""

from __future__ import annotations

import lzma
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(HERE.parent / "benchmarks"))
    import bench_identification

    return bench_identification


def _pair(p_listed, p_absent):
    truth = [SimpleNamespace(in_catalogue=True, colocated=False) for _ in p_listed]
    truth += [SimpleNamespace(in_catalogue=False, colocated=False) for _ in p_absent]
    results = [SimpleNamespace(p_unlisted=p) for p in (*p_listed, *p_absent)]
    return SimpleNamespace(tracklets=truth), results


def test_absent_tracklets_are_weighted_to_their_share(bench):
    """Four listed and two absent tracklets, all at p 0.3: unweighted a third is absent;
    weighted to a share of 20 % (odds 1/4 against the four listed), one in five."""
    pair = _pair([0.3] * 4, [0.3] * 2)
    plain = bench.unlisted_reliability([pair])
    weighted = bench.unlisted_reliability([pair], [0.2])
    assert plain == ["    p [0.1, 0.5): 6 tracklets, mean p 0.3000, absent 0.3333"]
    assert weighted == ["    p [0.1, 0.5): 6 tracklets, mean p 0.3000, absent 0.2000"]


def test_absent_share_of_a_real_pair(bench):
    """The share of the newer snapshot's objects absent from the older one, against the
    NORAD numbers read from the element sets' first lines."""
    older, newer = bench.snapshot("16"), bench.snapshot("17")

    def ids(path):
        with lzma.open(path, "rt") as f:
            return [line[2:7] for line in f if line.startswith("1 ")]

    old, new = set(ids(older)), ids(newer)
    expected = sum(n not in old for n in new) / len(new)
    assert bench.absent_share(older, newer) == pytest.approx(expected, abs=1e-12)
    assert 0.0005 < expected < 0.005


def test_tracklets_nearer_to_another_object_are_counted(bench):
    """A mate fitting as well with a smaller time offset than the truth's counts (once,
    whether or not the truth was named); a mate further along track, a worse fit, or a
    record without the truth does not."""
    from aposos.model import Candidate, Correlation

    def record(status, named, *cands):
        return Correlation(
            status=status, norad_id=named, score=0.9, rms_arcsec=1.0,
            time_offset_s=0.0, candidates=[Candidate(*c) for c in cands],
        )  # fmt: skip

    truth = [SimpleNamespace(norad_id=1, in_catalogue=True, colocated=False) for _ in range(4)]
    results = [
        record("ambiguous", 2, (2, 0.6, 1.0, 5.0, 38.0, 0.1), (1, 0.4, 1.2, 20.0, 150.0, 0.3)),
        record("correlated", 1, (1, 0.95, 1.0, -9.0, -68.0, 0.0), (2, 0.05, 1.5, 4.0, 30.0, 0.1)),
        record("correlated", 1, (1, 0.95, 1.0, 3.0, 23.0, 0.0), (2, 0.05, 1.0, 30.0, 230.0, 0.0)),
        record("uncorrelated", 2, (2, 0.5, 1.0, 1.0, 8.0, 0.0)),
    ]
    lines = bench.nearer_than_truth(SimpleNamespace(tracklets=truth), results)
    assert lines == [
        "    nearer to another object than to their own: 2 (50.00% of listed; "
        "1 named right anyway, 1 not)"
    ]
    worse = [record("ambiguous", 2, (2, 0.6, 9.0, 5.0, 38.0, 0.1), (1, 0.4, 1.2, 20.0, 150, 0.3))]
    assert (
        "nearer to another object than to their own: 0 "
        in bench.nearer_than_truth(SimpleNamespace(tracklets=truth[:1]), worse)[0]
    )
