"""Reference star catalogues against positions published outside this project."""

from __future__ import annotations

import warnings

import erfa
import numpy as np
import pytest

from aposos.station.stars import StarCatalogue, jyear_from_jd

one_arcsec = 1 / 3600


def hms(h, m, s):
    return 15 * (h + m / 60 + s / 3600)


def dms(d, m, s, sign=1):
    return sign * (d + m / 60 + s / 3600)


# ICRS positions at epoch J2000.0 from the Hipparcos new reduction (van Leeuwen 2007,
# A&A 474, 653), as SIMBAD lists them; brightness in Hp (ESA 1997 / van Leeuwen 2007).
KNOWN_J2000 = {
    "Vega": (hms(18, 36, 56.33635), dms(38, 47, 1.2802)),
    "Sirius": (hms(6, 45, 8.91728), dms(16, 42, 58.0171, -1)),
    "Arcturus": (hms(14, 15, 39.67207), dms(19, 10, 56.6730)),
    "Betelgeuse": (hms(5, 55, 10.30536), dms(7, 24, 25.4304)),
    "Polaris": (hms(2, 31, 49.09456), dms(89, 15, 50.7923)),
    "Barnard's star": (hms(17, 57, 48.49803), dms(4, 41, 36.2072)),  # 10.4 arcsec/yr
}


def _separation_deg(ra1, dec1, ra2, dec2):
    ra1, dec1, ra2, dec2 = map(np.radians, (ra1, dec1, ra2, dec2))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(h)))


@pytest.fixture(scope="module")
def hipparcos():
    return StarCatalogue.load("hipparcos")


@pytest.mark.parametrize("name", list(KNOWN_J2000))
def test_hipparcos_known_stars_at_j2000(hipparcos, name):
    ra, dec = KNOWN_J2000[name]
    stars = hipparcos.cone(ra, dec, 30 * one_arcsec, epoch_jyear=2000.0)
    assert len(stars.ra_deg) >= 1, f"{name} not found"
    sep = _separation_deg(stars.ra_deg[0], stars.dec_deg[0], ra, dec)
    assert sep < 0.1 * one_arcsec, f"{name} off by {sep * 3600:.3f} arcsec"


def test_brightest_star_in_the_sky(hipparcos):
    ra, dec = KNOWN_J2000["Sirius"]
    stars = hipparcos.cone(ra, dec, 1.0, epoch_jyear=2000.0)
    assert stars.mag[0] == pytest.approx(-1.09, abs=0.05)  # Sirius, Hp = -1.0876
    assert np.all(np.diff(stars.mag) >= 0)  # brightest first


def test_proper_motion_matches_erfa_space_motion(hipparcos):
    """Positions carried to 2026.9 agree with erfa's rigorous space motion (zero radial
    velocity) to a milliarcsecond, for the fastest stars in a wide cone too."""
    ra0, dec0 = KNOWN_J2000["Barnard's star"]
    idx, q = hipparcos.cone_index(ra0, dec0, 8.0, epoch_jyear=2026.9)
    ra = np.degrees(np.arctan2(q[:, 1], q[:, 0])) % 360
    dec = np.degrees(np.arcsin(q[:, 2]))
    ep0 = erfa.epj2jd(hipparcos.epoch_jyear[idx])
    ep1 = erfa.epj2jd(np.full(idx.size, 2026.9))
    cosd = np.cos(np.radians(hipparcos.dec_deg[idx]))
    mas = np.radians(1 / 3.6e6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", erfa.ErfaWarning)  # parallax floor notices
        ra_e, dec_e, *_ = erfa.pmsafe(
            np.radians(hipparcos.ra_deg[idx]),
            np.radians(hipparcos.dec_deg[idx]),
            hipparcos.pmra_masyr[idx] * mas / cosd,
            hipparcos.pmdec_masyr[idx] * mas,
            np.full(idx.size, 0.01),  # 10 mas parallax, no radial velocity
            np.zeros(idx.size),
            *ep0,
            *ep1,
        )
    sep = _separation_deg(ra, dec, np.degrees(ra_e), np.degrees(dec_e))
    assert idx.size > 100
    assert sep.max() < 0.001 * one_arcsec
    barnard = np.argmin(_separation_deg(ra, dec, ra0, dec0))
    assert hipparcos.pmdec_masyr[idx[barnard]] > 10000  # the fast one is in the test


def test_gaia_and_hipparcos_agree():
    """Two independent missions: matched stars agree to about 0.1 arcsec at 2026.9."""
    gaia = StarCatalogue.load("gaia")
    hip = StarCatalogue.load("hipparcos")
    g = gaia.cone(83.8, -5.4, 3.0, epoch_jyear=2026.9)  # Orion
    h = hip.cone(83.8, -5.4, 3.0, epoch_jyear=2026.9, mag_limit=9.0)
    sep = _separation_deg(
        h.ra_deg[:, None], h.dec_deg[:, None], g.ra_deg[None, :], g.dec_deg[None, :]
    )
    nearest = sep.min(axis=1)
    matched = nearest < 2 * one_arcsec
    assert matched.mean() > 0.9
    assert np.median(nearest[matched]) < 0.1 * one_arcsec


def test_both_adds_faint_hipparcos_stars():
    both = StarCatalogue.load("both")
    gaia = StarCatalogue.load("gaia")
    assert len(gaia) < len(both) < len(gaia) + 20000
    assert both.faint_mag > 12.0 and gaia.faint_mag <= 10.0 + 1e-6
    # no star twice: the brightest stars appear once each
    s = both.cone(*KNOWN_J2000["Vega"], 0.05, epoch_jyear=2026.9)
    assert np.sum(s.mag < 1) == 1


def test_cone_filters_and_errors(hipparcos):
    ra, dec = KNOWN_J2000["Betelgeuse"]
    stars = hipparcos.cone(ra, dec, 2.0, mag_limit=6.0)
    assert len(stars.mag) and stars.mag.max() <= 6.0
    assert np.all(_separation_deg(stars.ra_deg, stars.dec_deg, ra, dec) <= 2.0 + 1e-9)
    with pytest.raises(ValueError, match="radius"):
        hipparcos.cone(ra, dec, 0.0)
    with pytest.raises(ValueError, match="unknown star catalogue"):
        StarCatalogue.load("tycho")
    assert StarCatalogue.load("hipparcos") is hipparcos  # cached


def test_jyear():
    assert jyear_from_jd(2451545.0) == 2000.0
    assert jyear_from_jd(2451544.5, 0.5 + 365.25) == pytest.approx(2001.0)
