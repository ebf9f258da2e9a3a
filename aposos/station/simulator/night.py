"""Sky simulator: FITS frames as a station's camera would write them, with their truth.

``aposos station simulate`` and :func:`write_night` write a night; :class:`SkySimulator`
renders single frames for tests and benchmarks::

    sim = SkySimulator(StationConfig.load("stations/iran.toml"), StarCatalogue.load("both"),
                       Catalogue.from_tle("active.3le"), seed=1)
    spec = sim.frame_spec(np.datetime64("2020-10-02T19:00:00"), 300.0, 20.0)
    data, header, truth = sim.render(spec)
    noise_free = sim.expected_electrons(spec, sky=False, stars=False)  # satellites alone

What a frame holds: catalogue stars (Hipparcos / Gaia, proper motion applied) and
fainter synthetic field stars, with a seeing PSF (core, halo, aureole), diffraction
spikes from the spider vanes, sky background with a gradient, vignetting, pixel
response, dust, dark current and hot pixels, cosmic rays and air-shower clusters,
Poisson and read noise, bias with a column pattern, full well with blooming (CCD) and
the ADC ceiling; satellites from the TLE catalogue (SGP4 and the orbit layer's
astrometric RA/Dec, so stars and satellites share one convention), as streaks
(sidereal tracking), as points with trailed stars (rate tracking of a target) or as
GEO points with trailed stars (stare), dimmed by range, phase angle (diffuse sphere)
and extinction, and dark in the Earth's shadow.

FITS contract (the reduction relies on it)
------------------------------------------
One primary HDU, no extensions, no WCS. Data: uint16 as cameras write it (``BITPIX =
16``, ``BZERO = 32768``, ``BSCALE = 1``), rows = y, columns = x. Keys:

=========== ===========================================================================
IMAGETYP    ``'LIGHT'``, ``'BIAS'``, ``'DARK'`` or ``'FLAT'``
DATE-OBS    ISO UTC to the microsecond: the moment named by the station's
            ``camera.time_stamp`` (shutter open, mid-exposure or close) *as the camera
            stamped it*; the shutter really moves ``camera.shutter_latency_s`` later
EXPTIME     exposure (s)
TRACKMOD    ``'sidereal'``, ``'rate'`` or ``'stare'`` (lights only)
RA, DEC     commanded pointing at shutter open, degrees (lights only)
OBJCTRA     the same as sexagesimal strings ``'HH MM SS.ss'``, ``'+DD MM SS.s'``
OBJCTDEC
OBJECT      field name, or the tracked object's name
AIRMASS     at the commanded pointing, mid-exposure
SITELAT     degrees north; SITELONG degrees east; SITEELEV metres
STATION     station code (``[site] code``)
TELESCOP    INSTRUME  FILTER  FOCALLEN (mm)  XPIXSZ, YPIXSZ (um)
GAIN        e-/ADU; RDNOISE e-; XBINNING = YBINNING = 1
=========== ===========================================================================

truth.json
----------
``{"station", "seed", "mode", "star_catalogue", "satellite_catalogue", "conventions",
"camera": {"hot_pixels": [...], "pixel_scale_arcsec", ...}, "calibration": [...],
"frames": [...]}``; each frame: ``file``, ``date_obs``, ``utc_start``/``utc_mid``/
``utc_end`` (true exposure), ``mode``, ``commanded``, ``true_pointing`` (optical axis at
mid-exposure), ``tan`` (the true projection at
mid-exposure, see :class:`~aposos.station.simulator.sky.TanProjection`) and
``crval_start``/``crval_end`` (the axis moves in rate and stare modes), ``seeing``,
``sky``, ``limiting_mag`` (peak S/N 5 for a point source), ``n_catalogue_stars`` (in
the field, brighter than the limit), ``satellites`` (each: ``norad_id``, ``name``,
``role`` target|passing, ``sunlit``, ``magnitude``, ``peak_snr``, ``fraction_in_frame``,
and ``start``/``mid``/``end`` with ``utc``, ``ra_deg``, ``dec_deg``, ``x``, ``y``) and
``features`` (false-positive makers: ``diffraction_spike``, ``saturated_star``,
``blooming_column``, ``cosmic_ray``, ``cosmic_ray_cluster``, ``edge_clipped_streak``,
``hot_pixel``). Pixels are 0-based, numpy convention: ``x`` column, ``y`` row, centre of
pixel ``[0, 0]`` at (0, 0).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from astropy.io import fits

from aposos.model import datetime64_to_jd_fr
from aposos.orbit import frames
from aposos.station.config import StationConfig
from aposos.station.simulator.camera import CameraModel, station_seed
from aposos.station.simulator.fits import light_header, write_fits
from aposos.station.simulator.plan import FrameSpec, SatelliteEphemeris, plan_night
from aposos.station.simulator.render import PsfModel, add_points, add_segments
from aposos.station.simulator.sky import (
    PHOTON_FLUX_MAG0,
    SIDEREAL_RATE_DEG_S,
    FaintStars,
    TanProjection,
    airmass,
    cd_matrix,
    offset_pointing,
    sky_catalogue,
    standard_magnitude,
)
from aposos.station.stars import StarCatalogue, jyear_from_jd

__all__ = ["FrameSpec", "SkySimulator", "write_night"]

SAT_SEGMENTS = 32  # straight pieces per satellite track
STAR_SEGMENTS = 4  # per trailed star, when the trails bend
SPIKE_FRACTION_PER_VANE = 0.0015  # of a star's light diffracted into each vane's spikes
SPIKE_PIECES = 10
MAX_SPIKE_PX = 2000.0
SNR_LIMIT = 5.0


def _us(seconds: float) -> np.timedelta64:
    return np.timedelta64(int(round(seconds * 1e6)), "us")


def _iso(t: np.datetime64) -> str:
    return np.datetime_as_string(np.datetime64(t, "us"), unit="us")


class SkySimulator:
    """Renders frames of one station (see the module notes).

    Parameters
    ----------
    config : the station.
    stars : reference star catalogue (the sky's bright stars).
    satellites : a :class:`aposos.orbit.catalogue.Catalogue`, or None for no satellites.
    seed : seeds frame noise and synthetic faint stars (the camera's fixed pattern and
        the optics' distortion come from the station code).
    faint_stars : add synthetic stars fainter than the catalogue.
    """

    def __init__(self, config: StationConfig, stars: StarCatalogue, satellites=None, *,
                 seed: int = 0, faint_stars: bool = True):  # fmt: skip
        self.config = config
        self.stars = sky_catalogue(stars)  # the deep store's stars too, when installed
        self.satellites = satellites
        self.seed = int(seed)
        self.camera = CameraModel(config)
        cam, tel = config.camera, config.telescope
        h, w = cam.height_px, cam.width_px
        rng = np.random.default_rng([station_seed(config.code), 3])
        self.scale_deg = config.pixel_scale_arcsec / 3600.0 * (1.0 + rng.normal(0.0, 0.002))
        corner = math.hypot(w / 2, h / 2)
        self.k1_per_px2 = float(rng.uniform(0.5, 2.5) * rng.choice([-1.0, 1.0]) / corner**3)
        self.camera_angle_deg = float(rng.normal(0.0, 0.5))
        self.crpix = ((w - 1) / 2.0, (h - 1) / 2.0)
        self.f0_e_s = PHOTON_FLUX_MAG0 * tel.collecting_area_cm2 * tel.throughput
        if satellites is not None:
            self.standard_mag = standard_magnitude(satellites.norad_id, satellites.orbit_class)
        deepest = self.limiting_mag(
            min(config.simulator.seeing_fwhm_arcsec), max(config.simulator.sky_mag_arcsec2),
            config.simulator.exposure_s, 1.0,
        )  # fmt: skip
        self.faint = FaintStars(self.stars, deepest + 0.5, self.seed) if faint_stars else None

    # ------------------------------------------------------------------ photometry
    def sky_e_per_s(self, sky_mag_arcsec2: float, airmass_: float) -> float:
        """Sky electrons per pixel per second (brightening with air mass)."""
        return (
            self.f0_e_s * 10 ** (-0.4 * sky_mag_arcsec2) * (self.scale_deg * 3600) ** 2 * airmass_
        )

    def limiting_mag(self, seeing_arcsec, sky_mag_arcsec2, exposure_s, airmass_) -> float:
        """Magnitude of a point source with peak-pixel S/N 5 at the frame centre."""
        cam = self.config.camera
        psf = PsfModel(seeing_arcsec / (self.scale_deg * 3600))
        bg = (self.sky_e_per_s(sky_mag_arcsec2, airmass_) + cam.dark_current_e_per_s) * exposure_s
        bg += cam.read_noise_e**2
        peak = (SNR_LIMIT**2 + math.sqrt(SNR_LIMIT**4 + 4 * SNR_LIMIT**2 * bg)) / 2
        flux_e_s = peak / psf.peak_fraction() / exposure_s
        ext = self.config.simulator.extinction_mag_per_airmass * airmass_
        return 2.5 * math.log10(self.f0_e_s / flux_e_s) - ext

    # ------------------------------------------------------------------ geometry
    def _elevation_deg(self, ra_deg, dec_deg, t: np.datetime64) -> float:
        jd, fr = datetime64_to_jd_fr(np.array([t]))
        m = frames.gcrs_to_itrs_matrices(jd, fr)[0]
        ra, dec = math.radians(ra_deg), math.radians(dec_deg)
        v = m @ np.array(
            [math.cos(dec) * math.cos(ra), math.cos(dec) * math.sin(ra), math.sin(dec)]
        )
        lat = math.radians(self.config.site.latitude_deg)
        lon = math.radians(self.config.site.longitude_deg)
        up = np.array([math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat)])
        return math.degrees(math.asin(float(np.clip(v @ up, -1.0, 1.0))))

    def _axis_track(self, spec: FrameSpec, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """True optical axis (ra, dec) at the given times."""
        dt = (times - spec.t_open) / np.timedelta64(1, "s")
        if spec.mode == "sidereal":
            ra = np.full(dt.shape, spec.commanded_ra_deg)
            dec = np.full(dt.shape, spec.commanded_dec_deg)
        elif spec.mode == "stare":
            ra = (spec.commanded_ra_deg + SIDEREAL_RATE_DEG_S * dt) % 360.0
            dec = np.full(dt.shape, spec.commanded_dec_deg)
        else:
            eph = SatelliteEphemeris(
                self.satellites.subset([spec.target]), self.config.site,
                times + _us(spec.track_time_error_s),
            )  # fmt: skip
            ra, dec = eph.ra_deg[0], eph.dec_deg[0]
        return offset_pointing(ra, dec, spec.offset_xi_deg, spec.offset_eta_deg)

    def frame_spec(self, t_open, ra_deg: float, dec_deg: float, *, mode: str = "sidereal",
                   target_norad: int | None = None, index: int = 0, **conditions) -> FrameSpec:  # fmt: skip
        """A single frame's spec with conditions drawn from the station's ranges.

        ``conditions`` override any :class:`FrameSpec` field (e.g. ``seeing_fwhm_arcsec``).
        In rate mode ``target_norad`` names the tracked object and the commanded pointing
        follows it (``ra_deg``/``dec_deg`` are then ignored).
        """
        from aposos.station.simulator.plan import _conditions

        rng = np.random.default_rng([self.seed, 5, index])
        cond = _conditions(self.config, rng)
        t_open = np.datetime64(t_open, "us")
        target = None
        if mode == "rate":
            if target_norad is None or self.satellites is None:
                raise ValueError("rate mode needs satellites and target_norad")
            target = self.satellites.index_of(int(target_norad))
            eph = SatelliteEphemeris(
                self.satellites.subset([target]), self.config.site, np.array([t_open])
            )
            ra_deg, dec_deg = float(eph.ra_deg[0, 0]), float(eph.dec_deg[0, 0])
        cond.update(conditions)
        sim = self.config.simulator
        default_exposure = sim.rate_exposure_s if mode == "rate" else sim.exposure_s
        return FrameSpec(index=index, t_open=t_open, exposure_s=cond.pop("exposure_s", default_exposure),
                         mode=mode, commanded_ra_deg=ra_deg % 360.0, commanded_dec_deg=dec_deg,
                         target=target, **cond)  # fmt: skip

    # ------------------------------------------------------------------ rendering
    def _scene(self, spec: FrameSpec, *, sky: bool = True, stars: bool = True,
               satellites: bool = True) -> tuple[np.ndarray, dict]:  # fmt: skip
        """Expected photo-electrons per pixel (before the flat field) and the frame context."""
        cam = self.config.camera
        h, w = cam.height_px, cam.width_px
        T = float(spec.exposure_s)
        offsets = np.round(np.linspace(0.0, T, SAT_SEGMENTS + 1) * 1e6).astype(np.int64)
        t_nodes = spec.t_open + offsets.astype("timedelta64[us]")
        mid = SAT_SEGMENTS // 2
        axis_ra, axis_dec = self._axis_track(spec, t_nodes)
        cd = cd_matrix(self.scale_deg, self.camera_angle_deg + spec.rotation_deg)
        projs = [TanProjection(float(a), float(d), self.crpix, cd, self.k1_per_px2)
                 for a, d in zip(axis_ra, axis_dec, strict=True)]  # fmt: skip
        elevation = self._elevation_deg(axis_ra[mid], axis_dec[mid], t_nodes[mid])
        x_air = float(airmass(max(elevation, 1.0)))
        psf = PsfModel(spec.seeing_fwhm_arcsec / (self.scale_deg * 3600))
        sky_e = self.sky_e_per_s(spec.sky_mag_arcsec2, x_air) * T
        lim = self.limiting_mag(spec.seeing_fwhm_arcsec, spec.sky_mag_arcsec2, T, x_air)
        signal = np.zeros((h, w), dtype=np.float32)
        if sky:  # a linear gradient, as the sum of a row and a column profile
            gx, gy = spec.sky_gradient
            col = sky_e * (0.5 + gx * (np.arange(w) / max(w - 1, 1) - 0.5))
            row = sky_e * (0.5 + gy * (np.arange(h) / max(h - 1, 1) - 0.5))
            np.add(row[:, None], col[None, :], out=signal, casting="unsafe")
        features: list[dict] = []
        n_cat = n_drawn = 0
        if stars:
            n_cat, n_drawn = self._render_stars(
                signal, spec, projs, t_nodes, psf, x_air, lim, features
            )
        sats = (
            self._render_satellites(signal, spec, projs, t_nodes, psf, sky_e, features)
            if satellites
            else []
        )
        ctx = {"t_nodes": t_nodes, "axis": (axis_ra, axis_dec), "projs": projs, "psf": psf,
               "elevation": elevation, "airmass": x_air, "sky_e": sky_e, "limiting_mag": lim,
               "features": features, "n_catalogue": n_cat, "n_drawn": n_drawn, "satellites": sats}  # fmt: skip
        return signal, ctx

    def expected_electrons(self, spec: FrameSpec, *, sky: bool = True, stars: bool = True,
                           satellites: bool = True) -> np.ndarray:  # fmt: skip
        """Noise-free photo-electrons reaching each pixel during the exposure, before the flat
        field (vignetting, pixel response), dark current and read-out. For tests and scoring."""
        return self._scene(spec, sky=sky, stars=stars, satellites=satellites)[0]

    def render(self, spec: FrameSpec) -> tuple[np.ndarray, fits.Header, dict]:
        """Render one light frame.

        Returns
        -------
        data : uint16 (rows, columns) image.
        header : the FITS header (see the contract in the module notes).
        truth : the frame's truth record (see the module notes), without ``file``.
        """
        cfg, cam = self.config, self.config.camera
        T = float(spec.exposure_s)
        rng = np.random.default_rng([self.seed, 1000 + spec.index])
        signal, ctx = self._scene(spec)
        t_nodes, projs, psf = ctx["t_nodes"], ctx["projs"], ctx["psf"]
        axis_ra, axis_dec = ctx["axis"]
        x_air, sky_e, lim = ctx["airmass"], ctx["sky_e"], ctx["limiting_mag"]
        elevation, features, sats = ctx["elevation"], ctx["features"], ctx["satellites"]
        n_cat, n_drawn = ctx["n_catalogue"], ctx["n_drawn"]
        mid = SAT_SEGMENTS // 2
        k_ext = cfg.simulator.extinction_mag_per_airmass
        exposure = self.camera.expose(signal, T, rng)
        features += exposure.features
        noise_floor = math.sqrt(sky_e + cam.read_noise_e**2)
        for x, y, r in zip(
            self.camera.hot_x, self.camera.hot_y, self.camera.hot_rate_e_s, strict=True
        ):
            if r * T > 5 * noise_floor:
                features.append(
                    {"kind": "hot_pixel", "x": int(x), "y": int(y), "e": round(float(r * T), 1)}
                )

        latency = _us(cam.shutter_latency_s)
        event = {"start": 0.0, "mid": T / 2, "end": T}[cam.time_stamp]
        date_obs = spec.t_open + _us(event) - latency
        header = light_header(cfg, spec, date_obs, x_air)
        truth = {
            "imagetyp": "LIGHT",
            "date_obs": _iso(date_obs),
            "utc_start": _iso(t_nodes[0]),
            "utc_mid": _iso(t_nodes[mid]),
            "utc_end": _iso(t_nodes[-1]),
            "exposure_s": T,
            "mode": spec.mode,
            "visit": spec.visit,
            "object": spec.object,
            "commanded": {"ra_deg": spec.commanded_ra_deg, "dec_deg": spec.commanded_dec_deg},
            "pointing_error_deg": {"xi": spec.offset_xi_deg, "eta": spec.offset_eta_deg},
            "true_pointing": {"ra_deg": float(axis_ra[mid]), "dec_deg": float(axis_dec[mid])},
            "tan": projs[mid].to_dict(),
            "crval_start": [float(axis_ra[0]), float(axis_dec[0])],
            "crval_end": [float(axis_ra[-1]), float(axis_dec[-1])],
            "elevation_deg": round(elevation, 3),
            "airmass": round(x_air, 4),
            "seeing_fwhm_arcsec": round(spec.seeing_fwhm_arcsec, 3),
            "seeing_fwhm_px": round(psf.fwhm_px, 3),
            "sky_mag_arcsec2": round(spec.sky_mag_arcsec2, 3),
            "sky_e_per_px": round(sky_e, 2),
            "sky_gradient": [round(g, 4) for g in spec.sky_gradient],
            "zero_point_mag": round(2.5 * math.log10(self.f0_e_s) - k_ext * x_air, 4),
            "limiting_mag": round(lim, 3),
            "n_catalogue_stars": n_cat,
            "n_stars_drawn": n_drawn,
            "satellites": sats,
            "features": features,
        }
        return exposure.data, header, truth

    def _render_stars(self, signal, spec, projs, t_nodes, psf, x_air, lim, features):
        cam = self.config.camera
        h, w = signal.shape
        mid = len(projs) // 2
        centre = projs[mid]
        trail = max(
            float(np.hypot(*(np.array(p.world_to_pixel(centre.crval_ra_deg, centre.crval_dec_deg))
                             - np.array(self.crpix)))) for p in (projs[0], projs[-1])
        )  # fmt: skip
        radius = (math.hypot(w, h) / 2 + trail + 50) * self.scale_deg
        jd, fr = datetime64_to_jd_fr(np.array([t_nodes[mid]]))
        epoch = jyear_from_jd(float(jd[0]), float(fr[0]))
        ra, dec, mag = self.stars.cone(centre.crval_ra_deg, centre.crval_dec_deg, radius,
                                       epoch_jyear=epoch, mag_limit=lim + 1.5)  # fmt: skip
        n_catalogue = len(ra)
        if self.faint is not None:
            fra, fdec, fmag = self.faint.cone(
                centre.crval_ra_deg, centre.crval_dec_deg, radius, lim + 1.0
            )
            ra, dec, mag = (
                np.concatenate([ra, fra]),
                np.concatenate([dec, fdec]),
                np.concatenate([mag, fmag]),
            )
        k_ext = self.config.simulator.extinction_mag_per_airmass
        flux = self.f0_e_s * 10 ** (-0.4 * (mag + k_ext * x_air)) * spec.exposure_s
        xm, ym = centre.world_to_pixel(ra, dec)
        if spec.mode == "sidereal":
            nodes = np.array([mid])
        else:  # trails: one straight piece unless they bend by more than 0.05 px
            x0, y0 = projs[0].world_to_pixel(ra, dec)
            x1, y1 = projs[-1].world_to_pixel(ra, dec)
            bend = np.nanmax(np.hypot(xm - (x0 + x1) / 2, ym - (y0 + y1) / 2), initial=0.0)
            pieces = STAR_SEGMENTS if bend > 0.05 else 1
            nodes = np.linspace(0, len(projs) - 1, pieces + 1).astype(int)
        xy = np.array([projs[k].world_to_pixel(ra, dec) for k in nodes])  # (n_nodes, 2, n)
        margin = np.where(mag < 7, 400.0, 30.0) + np.hypot(
            xy[0, 0] - xy[-1, 0], xy[0, 1] - xy[-1, 1]
        )
        near = (xm > -margin) & (xm < w + margin) & (ym > -margin) & (ym < h + margin)
        inside = (xm > -0.5) & (xm < w - 0.5) & (ym > -0.5) & (ym < h - 0.5)
        n_catalogue = int(np.sum(inside[:n_catalogue] & (mag[:n_catalogue] <= lim)))
        xy, flux, mag, xm, ym = xy[:, :, near], flux[near], mag[near], xm[near], ym[near]
        if nodes.size == 1:
            add_points(signal, xy[0, 0], xy[0, 1], flux, psf)
            trail_px = np.zeros(flux.size)
        else:
            pieces = nodes.size - 1
            x0, y0 = xy[:-1, 0].ravel(), xy[:-1, 1].ravel()
            x1, y1 = xy[1:, 0].ravel(), xy[1:, 1].ravel()
            add_segments(signal, x0, y0, x1, y1, np.tile(flux / pieces, pieces), psf)
            trail_px = np.hypot(xy[-1, 0] - xy[0, 0], xy[-1, 1] - xy[0, 1])
        # saturated cores
        dilution = np.minimum(
            1.0, math.sqrt(2 * math.pi) * psf.sigma_px[0] / np.maximum(trail_px, 1e-9)
        )
        peak = flux * psf.peak_fraction() * dilution * self.camera.vignetting(xm, ym)
        for i in np.flatnonzero(
            (peak > cam.full_well) & (xm > -0.5) & (xm < w - 0.5) & (ym > -0.5) & (ym < h - 0.5)
        ):
            features.append({"kind": "saturated_star", "x": round(float(xm[i]), 2), "y": round(float(ym[i]), 2),
                             "mag": round(float(mag[i]), 2)})  # fmt: skip
        noise = math.sqrt(self.sky_e_per_s(spec.sky_mag_arcsec2, x_air) * spec.exposure_s
                          + cam.read_noise_e**2)  # fmt: skip
        self._render_spikes(signal, xy, flux, mag, psf, noise, features)
        return n_catalogue, int(flux.size)

    def _render_spikes(self, signal, xy, flux, mag, psf, noise_e, features):
        """Diffraction spikes of the spider vanes: arms of surface brightness ~ 1/r^2."""
        tel = self.config.telescope
        if tel.spider_vanes < 2:
            return
        arms = tel.spider_vanes if tel.spider_vanes % 2 == 0 else 2 * tel.spider_vanes
        arm_flux = flux * SPIKE_FRACTION_PER_VANE * tel.spider_vanes / arms
        core = psf.core()
        r0 = 1.5 * psf.fwhm_px
        line_peak = 1.0 / (math.sqrt(2 * math.pi) * math.sqrt(core.sigma_px[0] ** 2 + 1 / 12))
        # along an arm, I(r) = arm_flux r0 / r^2 per pixel of length: draw it out to where
        # it sinks to a third of the background noise, report it where it stays above 3 sigma
        r_max = np.minimum(np.sqrt(arm_flux * r0 * line_peak / (noise_e / 3.0)), MAX_SPIKE_PX)
        r_seen = np.minimum(np.sqrt(arm_flux * r0 * line_peak / (3.0 * noise_e)), MAX_SPIKE_PX)
        bright = np.flatnonzero(r_max > 3 * r0)
        if bright.size == 0:
            return
        angles = np.radians(tel.spider_angle_deg + 90.0 + 360.0 * np.arange(arms) / arms)
        n_nodes = xy.shape[0]
        steps = np.arange(SPIKE_PIECES + 1) / SPIKE_PIECES
        radii = r0 * (r_max[bright, None] / r0) ** steps  # (n, pieces + 1)
        piece = arm_flux[bright, None] * r0 * (1 / radii[:, :-1] - 1 / radii[:, 1:]) / n_nodes
        # broadcast over (node, star, arm, piece)
        cx = xy[:, 0, bright][:, :, None, None]
        cy = xy[:, 1, bright][:, :, None, None]
        ca = np.cos(angles)[None, None, :, None]
        sa = np.sin(angles)[None, None, :, None]
        r_in, r_out = radii[None, :, None, :-1], radii[None, :, None, 1:]
        shape = (n_nodes, bright.size, arms, SPIKE_PIECES)
        add_segments(
            signal,
            np.broadcast_to(cx + r_in * ca, shape).ravel(),
            np.broadcast_to(cy + r_in * sa, shape).ravel(),
            np.broadcast_to(cx + r_out * ca, shape).ravel(),
            np.broadcast_to(cy + r_out * sa, shape).ravel(),
            np.broadcast_to(piece[None, :, None, :], shape).ravel(),
            core,
        )
        k = n_nodes // 2
        h, w = signal.shape
        angles_deg = [round(math.degrees(a) % 360, 2) for a in angles]
        for i in bright[r_seen[bright] >= 3 * r0 + 5]:
            x, y = float(xy[k, 0, i]), float(xy[k, 1, i])
            if -r_seen[i] < x < w + r_seen[i] and -r_seen[i] < y < h + r_seen[i]:
                features.append({"kind": "diffraction_spike", "x": round(x, 2), "y": round(y, 2),
                                 "mag": round(float(mag[i]), 2), "angles_deg": angles_deg,
                                 "length_px": round(float(r_seen[i]), 1)})  # fmt: skip

    def _render_satellites(self, signal, spec, projs, t_nodes, psf, sky_e, features) -> list[dict]:
        from aposos.station.simulator.satellites import render_satellites

        if self.satellites is None:
            return []
        return render_satellites(self, signal, spec, projs, t_nodes, psf, sky_e, features)


def write_night(
    config: StationConfig,
    stars: StarCatalogue,
    satellites,
    start,
    minutes: float,
    out_dir: str | Path,
    *,
    mode: str = "sidereal",
    seed: int = 0,
    pointings: list[dict] | None = None,
    n_calibration: int = 5,
    progress: bool = True,
    sources: dict | None = None,
) -> dict:
    """Simulate a night: ``lights/*.fits``, ``calib/*.fits`` and ``truth.json`` in ``out_dir``.

    Returns the truth document (also written to ``truth.json``).
    """
    from tqdm import tqdm

    from aposos.station.simulator.fits import calibration_frames

    out = Path(out_dir)
    specs = plan_night(config, satellites, np.datetime64(start, "us"), minutes,
                       mode=mode, seed=seed, pointings=pointings)  # fmt: skip
    sim = SkySimulator(config, stars, satellites, seed=seed)
    (out / "lights").mkdir(parents=True, exist_ok=True)
    (out / "calib").mkdir(parents=True, exist_ok=True)
    frames_truth = []
    for spec in tqdm(specs, desc=f"simulating {config.code}", unit="frame", disable=not progress):
        data, header, truth = sim.render(spec)
        stamp = str(spec.t_open.astype("datetime64[s]")).replace("-", "").replace(":", "")
        name = f"lights/{config.code}_{stamp}_{spec.index:04d}.fits"
        write_fits(out / name, data, header)
        frames_truth.append({"file": name, **truth})
    calib = calibration_frames(sim, out, specs, n_calibration)
    doc = {
        "station": config.code,
        "station_file": str(config.path) if config.path else None,
        "seed": seed,
        "mode": mode,
        "star_catalogue": sim.stars.name,
        **(sources or {}),
        "conventions": {
            "pixel": "0-based numpy: x column, y row; pixel [0, 0] centred at (0, 0)",
            "radec": "astrometric ICRS, as Catalogue.radec (stars: catalogue place at the epoch)",
            "time": "UTC; utc_start/mid/end are the true exposure; DATE-OBS as the camera stamps it",
            "tan": "(x, y) = crpix + u (1 + k1 |u|^2), u = cd^-1 (xi, eta), TAN about crval",
            "magnitude": "Gaia G / Hipparcos Hp band (unfiltered response)",
        },
        "camera": {
            "pixel_scale_arcsec": sim.scale_deg * 3600,
            "k1_per_px2": sim.k1_per_px2,
            "gain_e_per_adu": config.camera.gain_e_per_adu,
            "read_noise_e": config.camera.read_noise_e,
            "full_well_e": config.camera.full_well,
            "hot_pixels": sim.camera.hot_pixels(),
        },
        "calibration": calib,
        "frames": frames_truth,
    }
    (out / "truth.json").write_text(json.dumps(doc, indent=1, allow_nan=False))
    return doc
