"""The deep star store: real Tycho-2 stars (Debian's astrometry.net index), imports, and
a 0.4-degree field that only the deep store solves."""

from __future__ import annotations

import os

import clirun
import numpy as np
import pytest
from station_synth import frame_stars, make_frame

from aposos.station.astrometry import PlateSolver
from aposos.station.stars import StarCatalogue, is_store_star
from aposos.station.stars_store import STORE_ENV, VT_MINUS_G, StarStore, build_tycho2
from aposos.station.stars_tycho2 import DEBIAN_PACKAGE, find_index, read_index

one_arcsec = 1 / 3600
INDEX = find_index()
needs_index = pytest.mark.skipif(
    INDEX is None, reason=f"Debian's {DEBIAN_PACKAGE} is not installed (tests/system_packages.py)"
)


@pytest.fixture(scope="module")
def tycho2():
    if INDEX is None:
        pytest.skip(f"Debian's {DEBIAN_PACKAGE} is not installed (tests/system_packages.py)")
    return read_index(INDEX)


@pytest.fixture(scope="module")
def deep_store(tmp_path_factory, tycho2):
    """A store built from the installed index, used through $APOSOS_STAR_STORE."""
    folder = tmp_path_factory.mktemp("stars")
    store = StarStore.empty(folder)
    counts = build_tycho2(store, INDEX, StarCatalogue.load("both"))
    store.save()
    old = os.environ.get(STORE_ENV)
    os.environ[STORE_ENV] = str(folder)
    yield folder, counts
    if old is None:
        os.environ.pop(STORE_ENV, None)
    else:
        os.environ[STORE_ENV] = old


def test_tycho2_positions_against_hipparcos2(tycho2):
    """Tycho-2 positions are J2000.0: Hipparcos 2 (ESA I/311) moved to J2000.0 agrees to
    a few hundredths of an arcsec; left at its own epoch J1991.25, fast stars do not."""
    from scipy.spatial import cKDTree

    ra, dec, vt = tycho2
    assert ra.size == 1_871_011
    hip = StarCatalogue.load("hipparcos")
    # bright stars common to both, a spread of proper motions (HIP numbers of the catalogue)
    rows = np.flatnonzero((hip.mag < 8.5) & (np.hypot(hip.pmra_masyr, hip.pmdec_masyr) > 300))
    rows = rows[:: max(1, rows.size // 40)]
    unit = np.stack(
        [np.cos(np.radians(dec)) * np.cos(np.radians(ra)),
         np.cos(np.radians(dec)) * np.sin(np.radians(ra)), np.sin(np.radians(dec))], axis=1,
    )  # fmt: skip
    tree = cKDTree(unit)
    d2000, k = tree.query(hip.positions_at(2000.0, rows))
    sep2000 = np.degrees(d2000) / one_arcsec
    found = sep2000 < 2.0  # the index leaves out some doubles (1 arcsec de-duplication)
    assert found.mean() > 0.8
    assert np.median(sep2000[found]) < 0.06
    assert np.percentile(sep2000[found], 80) < 0.15
    d1991, _ = tree.query(hip.positions_at(1991.25, rows[found]))
    assert np.median(np.degrees(d1991) / one_arcsec) > 2.0  # > 300 mas/yr over 8.75 yr
    # magnitudes: VT close to Hipparcos Hp for these stars
    assert abs(np.median(vt[k[found]] - hip.mag[rows[found]])) < 0.3


def test_store_is_deeper_and_consistent(deep_store):
    folder, counts = deep_store
    assert counts["read"] == 1_871_011
    assert 1_300_000 < counts["kept"] < 1_500_000  # the rest are Gaia/Hipparcos stars
    deep = StarCatalogue.load("deep")
    both = StarCatalogue.load("both")
    assert StarCatalogue.load("auto") is deep
    assert len(deep) == len(both) + counts["kept"]
    assert "tycho2" in deep.store_description
    # a small field: Tycho-2 gives several times the stars, one to two magnitudes deeper
    cone = deep.cone(120.0, 30.0, 0.2, epoch_jyear=2026.9)
    assert len(cone.mag) >= 3 * len(both.cone(120.0, 30.0, 0.2).mag) >= 3
    assert cone.mag.max() > 11.0
    # fill_to: every packaged star stays, store stars only fill up to the count
    n_packaged = len(both.cone(120.0, 30.0, 2.0, epoch_jyear=2026.9).mag)
    filled = deep.cone(120.0, 30.0, 2.0, epoch_jyear=2026.9, fill_to=n_packaged + 10)
    assert len(filled.mag) == n_packaged + 10
    rich = deep.cone(120.0, 30.0, 2.0, epoch_jyear=2026.9, fill_to=5)
    assert len(rich.mag) == n_packaged
    # the store's stars carry the G-like band: VT minus the median offset
    idx, _ = deep.cone_index(120.0, 30.0, 2.0)
    assert is_store_star(deep.source_id[idx]).any()
    assert VT_MINUS_G == pytest.approx(0.35)
    # the Dec-band index gives the same cone as the full scan
    from aposos.station import stars as S

    full = S.StarCatalogue("x", deep.source_id, deep.ra_deg, deep.dec_deg, deep.pmra_masyr,
                           deep.pmdec_masyr, deep.epoch_jyear, deep.mag, 10.0)  # fmt: skip
    full_idx = np.flatnonzero(full._unit @ full._unit[idx[0]] >= np.cos(np.radians(2.0)))
    band_idx, _ = full.cone_index(full.ra_deg[idx[0]], full.dec_deg[idx[0]], 2.0)
    assert set(band_idx) <= set(full_idx) and len(band_idx) >= len(full_idx) - 5  # pm margin


def test_small_field_solves_only_with_the_deep_store(tmp_path, deep_store):
    """A 0.4-degree frame (480 px of 3 arcsec) whose sky holds the Tycho-2 stars: the
    packaged catalogue has too few stars there, the deep store solves it."""
    path = tmp_path / "small.fits"
    make_frame(
        path, ra=120.0, dec=30.0, shape=(480, 480), scale_arcsec=3.0, rotation_deg=20.0,
        pointing_error=(0.15, -0.1), zero_point=20.5, mag_limit=14.0, catalogue="deep",
        faint_stars=60, seed=5,
    )  # fmt: skip
    frame, s = frame_stars(path)
    args = dict(
        shape=frame.shape, scale_arcsec=frame.pixel_scale_arcsec(), epoch_jyear=2026.9,
        pointing_deg=frame.pointing_deg, saturated=s.nsat > 0,
    )  # fmt: skip
    packaged = PlateSolver(StarCatalogue.load("both"))(s.x, s.y, s.flux, **args)
    assert not packaged.solved
    deep = PlateSolver(StarCatalogue.load("deep"))(s.x, s.y, s.flux, **args)
    assert deep.solved, deep.reason
    assert deep.n_matched >= 8
    assert deep.rms_px < 0.3


def _small_field(path, ra, dec, rotation_deg, pointing_error, seed):
    """A 0.4-degree frame of the deep sky (tuning seed 11 of bench_small_fields.py)."""
    truth = make_frame(
        path, ra=ra, dec=dec, shape=(480, 480), scale_arcsec=3.0, rotation_deg=rotation_deg,
        pointing_error=pointing_error, zero_point=20.5, mag_limit=14.0, catalogue="deep",
        faint_stars=60, seed=seed,
    )  # fmt: skip
    frame, s = frame_stars(path)
    args = dict(
        shape=frame.shape, scale_arcsec=3.0, epoch_jyear=2026.9,
        pointing_deg=frame.pointing_deg, saturated=s.nsat > 0,
    )  # fmt: skip
    return truth, s, args


def _corner_error_px(sol, wcs, n_px=480) -> float:
    gx = np.array([0, n_px - 1, 0, n_px - 1, n_px / 2])
    gy = np.array([0, 0, n_px - 1, n_px - 1, n_px / 2])
    ra, dec = sol.wcs((n_px, n_px)).all_pix2world(gx, gy, 0)
    x, y = wcs.all_world2pix(ra, dec, 0)
    return float(np.max(np.hypot(x - gx, y - gy)))


def _turned(cd, angle_deg, scale):
    a = np.radians(angle_deg)
    return scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) @ cd


def test_few_stars_solve_only_with_the_known_geometry(tmp_path, deep_store):
    """Five Tycho-2 stars in a 0.4-degree field (four detected, one of them cut by the
    edge and left out): too few for pair voting; with the camera's rotation known to a
    degree and its scale to 1 %, the offset search places the frame within a pixel at the
    corners on the three brightest detections."""
    truth, s, args = _small_field(tmp_path / "f.fits", 41.486, 6.346, 231.64, (-0.164, 0.0),
                                  147918872)  # fmt: skip
    solver = PlateSolver(StarCatalogue.load("deep"))
    assert not solver(s.x, s.y, s.flux, **args).solved
    known = _turned(truth.wcs.wcs.cd, 0.8, 1.008)
    sol = solver(s.x, s.y, s.flux, geometry_cd=known, **args)
    assert sol.solved, sol.reason
    assert "known geometry" in sol.distortion
    assert sol.n_matched >= 3
    assert _corner_error_px(sol, truth.wcs) < 1.0


def test_reduction_takes_the_geometry_from_the_last_solved_frame(tmp_path, deep_store):
    """The reduction hands the solver the last solved frame's scale and rotation: a rich
    field solves by the pair vote, then the few-star field of the same camera by offset."""
    from aposos.station.config import StationConfig
    from aposos.station.fitsframe import read_frame
    from aposos.station.reduce import ReduceOptions, Reducer

    reducer = Reducer(StationConfig.load("stations/iran.toml"),
                      options=ReduceOptions(catalogue="deep"))  # fmt: skip
    reports = []
    for name, ra, dec, err, seed in (
        ("rich.fits", 120.0, 30.0, (0.15, -0.1), 5),
        ("few.fits", 41.486, 6.346, (-0.164, 0.0), 147918872),
    ):
        truth = make_frame(
            tmp_path / name, ra=ra, dec=dec, shape=(480, 480), scale_arcsec=3.0,
            rotation_deg=231.64, pointing_error=err, zero_point=20.5, mag_limit=14.0,
            catalogue="deep", faint_stars=60, seed=seed,
        )  # fmt: skip
        reports.append(reducer.reduce_frame(read_frame(tmp_path / name)))
    rich, few = reports
    assert rich.status == "solved" and rich.info["solve"] == "pointing"
    assert few.status == "solved", few.reason
    assert few.info["solve"] == "pointing, known geometry"
    assert _corner_error_px(few.solution, truth.wcs) < 1.0


def test_known_geometry_refuses_what_chance_explains(tmp_path, deep_store):
    """It must refuse rather than guess: a field with two catalogue stars (where the old
    pair vote accepted a wrong fit of 2.3 px residuals), and a decoy, the stars of one
    field under the header pointing of another 1 degree away."""
    solver = PlateSolver(StarCatalogue.load("deep"))
    truth, s, args = _small_field(tmp_path / "two.fits", 47.037, -21.69, 41.64, (-0.14, 0.0),
                                  979938487)  # fmt: skip
    for cd in (None, truth.wcs.wcs.cd):
        sol = solver(s.x, s.y, s.flux, geometry_cd=cd, **args)
        assert not sol.solved, (cd, sol.n_matched, sol.distortion)
    truth, s, args = _small_field(tmp_path / "decoy.fits", 41.486, 6.346, 231.64,
                                  (-0.164, 0.0), 147918872)  # fmt: skip
    for dra, ddec in ((0.0, 1.0), (1.0, 0.0), (-0.7, -0.7), (0.0, -1.2)):
        ra0, dec0 = args["pointing_deg"]
        decoy = dict(args, pointing_deg=(ra0 + dra, dec0 + ddec))
        sol = PlateSolver(StarCatalogue.load("deep"), pointing_tolerance_deg=0.5)(
            s.x, s.y, s.flux, geometry_cd=truth.wcs.wcs.cd, **decoy
        )
        assert not sol.solved, (dra, ddec, sol.n_matched, sol.distortion)


def test_sky_shows_the_store_stars(deep_store):
    """The simulator's sky grows from `both` to `deep`; real store stars take the place
    of drawn faint stars, so a tile holds no fewer stars than before."""
    from aposos.station.simulator.sky import FaintStars, sky_catalogue

    both = StarCatalogue.load("both")
    deep = sky_catalogue(both)
    assert deep.name == "deep"
    assert sky_catalogue(StarCatalogue.load("hipparcos")).name == "hipparcos"
    # the sky's Tycho-2 stars have moved since J2000.0; the solver's catalogue has not
    solver_cat = StarCatalogue.load("deep")
    idx, _ = solver_cat.cone_index(120.0, 30.0, 1.0)
    moved = np.degrees(
        np.arccos(
            np.clip(
                np.sum(
                    deep.positions_at(2026.9, idx) * solver_cat.positions_at(2026.9, idx), axis=1
                ),
                -1,
                1,
            )
        )
    )
    store = is_store_star(solver_cat.source_id[idx])
    assert 0.2 < np.median(moved[store]) / one_arcsec < 0.7
    assert np.all(moved[~store] < 0.01 * one_arcsec)  # arccos round-off only
    plain = FaintStars(both, 16.0, seed=3)
    grown = FaintStars(deep, 16.0, seed=3)
    for band, i in ((120, 120), (90, 10), (60, 200)):
        synth = plain._tile(band, i)[2]
        kept = grown._tile(band, i)[2]
        n_ra = FaintStars._n_ra(band)
        ra0, ra1 = 360.0 * i / n_ra, 360.0 * (i + 1) / n_ra
        dec0 = band - 90.0
        idx, _ = deep.cone_index((ra0 + ra1) / 2, dec0 + 0.5, 1.5, epoch_jyear=2016.0)
        r, d, m = deep.ra_deg[idx], deep.dec_deg[idx], deep.mag[idx]
        real = is_store_star(deep.source_id[idx]) & (m > deep.complete_mag)
        real &= (r >= ra0) & (r < ra1) & (d >= dec0) & (d < dec0 + 1)
        assert kept.size + real.sum() >= synth.size
        assert kept.size == max(
            synth.size - real.sum(), synth.size - np.sum(synth <= m[real].max())
        )


# ------------------------------------------------------------------ the import command
def _aposos(*args, env=None):
    return clirun.run(*args, env=env)  # in this process: no interpreter start per command


@needs_index
def test_import_command(tmp_path, tycho2):
    """Rows in the layouts a station would download: a VizieR-style CSV of Tycho-2 rows
    (RAJ2000, DEJ2000, VTmag; J2000.0, no motion) and a Gaia-archive-style VOTable (ra,
    dec, pmra, pmdec, ref_epoch, phot_g_mean_mag)."""
    from astropy.table import Table

    ra, dec, vt = tycho2
    sel = np.flatnonzero((np.abs(dec - 30.0) < 1.0) & (np.abs(ra - 120.0) < 1.0))
    csv = tmp_path / "tycho2-rows.csv"
    Table({"TYC": np.arange(sel.size), "RAJ2000": ra[sel], "DEJ2000": dec[sel],
           "brightness": vt[sel]}).write(csv, format="ascii.csv")  # fmt: skip
    store = tmp_path / "store"
    env = {STORE_ENV: str(store)}
    done = _aposos("station", "stars", "import", str(csv), "--name", "t2", env=env)
    assert done.returncode == 2 and "no magnitude column" in done.stderr
    assert done.stderr.strip().splitlines()[-1].count("no magnitude column") == 1
    Table({"TYC": np.arange(sel.size), "RAJ2000": ra[sel], "DEJ2000": dec[sel],
           "VTmag": vt[sel]}).write(csv, format="ascii.csv", overwrite=True)  # fmt: skip
    done = _aposos("station", "stars", "import", str(csv), "--mag-offset", "-0.35", env=env)
    assert done.returncode == 2 and "--epoch" in done.stderr  # no epoch column
    done = _aposos("station", "stars", "import", str(csv), "--epoch", "2000.0",
                   "--mag-offset", "-0.35", "--name", "t2", env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "matching" in done.stderr  # progress
    opened = StarStore.open(store)
    assert opened.sources[0]["name"] == "t2"
    n_first = len(opened)
    assert 0 < n_first < sel.size  # the bright ones are packaged stars already
    # a Gaia-archive VOTable of some of the same stars, with motion: they replace them
    some = sel[:50]
    vot = tmp_path / "gaia-extract.vot"
    Table({"source_id": np.arange(some.size, dtype=np.int64), "ra": ra[some],
           "dec": dec[some], "pmra": np.full(some.size, 5.0), "pmdec": np.full(some.size, -3.0),
           "ref_epoch": np.full(some.size, 2000.0),
           "phot_g_mean_mag": vt[some] - 0.35}).write(vot, format="votable")  # fmt: skip
    done = _aposos("station", "stars", "import", str(vot), "-q", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    opened = StarStore.open(store)
    assert [s["name"] for s in opened.sources] == ["t2", "gaia-extract"]
    gaia_rows = opened.rows[opened.rows["origin"] == 1]
    assert gaia_rows.size > 0 and np.all(gaia_rows["pmra"] == 5.0)
    assert len(opened) == n_first  # replaced one for one
    info = _aposos("station", "stars", "info", env=env)
    assert "gaia-extract" in info.stdout and "per row" in info.stdout
    # bad files: one line each
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"not a FITS file at all" * 10)
    for bad in (junk, tmp_path / "absent.csv"):
        done = _aposos("station", "stars", "import", str(bad), env=env)
        assert done.returncode == 2
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr  # checked before loading
    help_ = _aposos("station", "stars", "import", "--help")
    assert help_.returncode == 0 and "--epoch" in help_.stdout


def test_solver_falls_back_and_says_which(tmp_path):
    """No store: `auto` is the packaged `both`, and the reduction names it."""
    from aposos.station.reduce import star_catalogue_label

    old = os.environ.get(STORE_ENV)
    os.environ[STORE_ENV] = str(tmp_path / "none")
    try:
        cat = StarCatalogue.load("auto")
        assert cat.name == "both"
        assert star_catalogue_label(cat).startswith("both (")
        with pytest.raises(ValueError, match="aposos station stars install"):
            StarCatalogue.load("deep")
    finally:
        if old is None:
            os.environ.pop(STORE_ENV, None)
        else:
            os.environ[STORE_ENV] = old
