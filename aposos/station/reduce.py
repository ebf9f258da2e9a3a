"""Frames -> tracklets: the station reduction, composing the stages.

Per light frame: read (header conventions in :mod:`~aposos.station.fitsframe`),
calibrate, extract and classify sources, plate-solve against the star catalogue
(the previous frame's solution is tried first, a fresh solve follows when the
pointing has moved), fit the satellite candidates, place them on the sky with
times from shutter open/close, zero point and magnitudes. Then detections are
linked across the frames of each field into tracklets.

Every frame gets a report (``reduction.json``): solved or why not, astrometric RMS,
stars matched, FWHM, limiting magnitude, detections. A bad frame is reported and
the batch carries on.

Example
-------
>>> from aposos.station.config import StationConfig  # doctest: +SKIP
>>> result = reduce_frames(["night/"], StationConfig.load("stations/iran.toml"))  # doctest: +SKIP
>>> result.tracklets[0].ra_deg  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from aposos.model import Tracklet
from aposos.station.astrometry import (
    PlateSolution,
    PlateSolver,
    TanSipModel,
    estimate_radial_k,
    model_from_wcs,
    refit,
    tan_project,
)
from aposos.station.calibrate import MasterCalibration, find_fits
from aposos.station.candidates import (
    TransientState,
    elongated_star_sigma,
    frame_candidates,
    trail_width,
    transient_points,
)
from aposos.station.detection import Detection
from aposos.station.extract import OTHER, SATURATED, STAR, SourceExtractor
from aposos.station.fitsframe import Frame, FrameError, read_frame, read_image_type
from aposos.station.linking import link_frames

__all__ = [
    "FrameReport", "ReduceOptions", "Reducer", "Reduction", "ReductionBatch", "reduce_frames",
]  # fmt: skip

log = logging.getLogger(__name__)

SIDEREAL_DEG_PER_S = 360.98564736629 / 86400.0


@dataclass
class ReduceOptions:
    """Knobs of the reduction (defaults suit the APOSOS stations)."""

    catalogue: str = "auto"  # the deep star store when installed, else both (stars.py)
    pointing_tolerance_deg: float = 1.5
    detect_sigma: float = 5.0
    timing_sigma_s: float = 0.002  # shutter timing uncertainty after latency correction
    max_gap_s: float = 120.0  # largest gap between frames of one tracklet
    min_points: int = 3  # frames needed for a tracklet of points
    edge_margin_px: float = 3.0  # a streak end this close to the edge is clipped
    blind: bool = True  # solve frames with no (or a wrong) pointing without it


@dataclass
class FrameReport:
    """What happened to one file (one entry of ``reduction.json``)."""

    file: str
    status: str  # solved | unsolved | error | calibration
    reason: str = ""
    info: dict = field(default_factory=dict)
    detections: list[Detection] = field(default_factory=list)
    centre_deg: tuple[float, float] | None = None
    mid_utc: np.datetime64 | None = None
    sources_table: np.ndarray | None = None  # for the archive (see archive.SOURCE_COLUMNS)
    solution: object | None = None  # the PlateSolution, for the run-wide distortion refit
    placement: dict | None = None  # what placing detections on the sky needs

    def to_json(self, tracklet_of: dict[int, str] | None = None) -> dict:
        out = {"file": self.file, "status": self.status, "solved": self.status == "solved"}
        if self.reason:
            out["reason"] = self.reason
        out.update(self.info)
        dets = []
        for d in self.detections:
            item = {
                "kind": d.kind,
                "x": round(d.x, 3),
                "y": round(d.y, 3),
                "snr": round(d.snr, 1),
                "mag": None if not np.isfinite(d.mag) else round(d.mag, 2),
                "sigma_arcsec": _num(d.sigma_arcsec, 2),
            }
            if d.radec_mid is not None:
                item["ra_deg"], item["dec_deg"] = (round(v, 7) for v in d.radec_mid)
            if d.kind == "streak":
                item["ends_px"] = [round(v, 3) for v in (d.xa, d.ya, d.xb, d.yb)]
                item["clipped"] = [d.clipped_a, d.clipped_b]
            if d.t_open is not None:
                item["utc_mid"] = np.datetime_as_string(d.t_mid, unit="us") + "Z"
            item["tracklet"] = (tracklet_of or {}).get(id(d))
            if d.notes:
                item["notes"] = d.notes
            dets.append(item)
        out["detections"] = dets
        return out


def _num(v, nd):
    return None if v is None or not np.isfinite(v) else round(float(v), nd)


@dataclass
class Reduction:
    """The result of a run: tracklets, per-frame reports, calibration summary."""

    tracklets: list[Tracklet]
    reports: list[FrameReport]
    calibration: dict
    tracklet_members: list[list[Detection]] = field(default_factory=list)
    false_alarm: list[float] = field(default_factory=list)  # per tracklet
    star_catalogue: str = ""  # the reference stars solved against (stars.py's name)

    def to_json(self) -> dict:
        tracklet_of = {}
        for t, members in zip(self.tracklets, self.tracklet_members, strict=True):
            for d in members:
                tracklet_of[id(d)] = t.uuid
        solved = sum(r.status == "solved" for r in self.reports)
        lights = sum(r.status in ("solved", "unsolved") for r in self.reports)
        return {
            "summary": {
                "files": len(self.reports),
                "light_frames": lights,
                "solved": solved,
                "errors": sum(r.status == "error" for r in self.reports),
                "tracklets": len(self.tracklets),
                "observations": int(sum(len(t) for t in self.tracklets)),
                "star_catalogue": self.star_catalogue,
            },
            "calibration": self.calibration,
            "tracklets": [
                {
                    "uuid": t.uuid,
                    "observations": len(t),
                    "frames": len(members),
                    "single_frame": len(members) == 1,
                    "false_alarm_probability": float(f"{fap:.3g}"),
                }
                for t, members, fap in zip(
                    self.tracklets, self.tracklet_members, self.false_alarm, strict=True
                )
            ],
            "frames": [r.to_json(tracklet_of) for r in self.reports],
        }


class Reducer:
    """Reduce frames of one station.

    Parameters
    ----------
    station : :class:`aposos.station.config.StationConfig`.
    calibration : masters to apply (none by default).
    options : :class:`ReduceOptions`.
    catalogue : a star catalogue object; by default ``StarCatalogue.load(options.catalogue)``.
    """

    def __init__(self, station, *, calibration=None, options=None, catalogue=None):
        self.station = station
        self.options = options or ReduceOptions()
        self.calibration = calibration or MasterCalibration()
        if catalogue is None:
            from aposos.station.stars import StarCatalogue

            catalogue = StarCatalogue.load(self.options.catalogue)
        log.info("reference stars: %s", star_catalogue_label(catalogue))
        self.solver = PlateSolver(
            catalogue, pointing_tolerance_deg=self.options.pointing_tolerance_deg
        )
        cam = station.camera
        self.saturation_adu = (
            min(float(cam.saturation_adu), cam.bias_adu + cam.full_well / cam.gain_e_per_adu) * 0.98
        )
        self.fwhm_guess_px = 2.0 / station.pixel_scale_arcsec * 1.0 + 1.5
        self._last: tuple[TanSipModel, tuple[float, float]] | None = None
        self._last_utc: np.datetime64 | None = None
        self._pending_ext = None

    # ------------------------------------------------------------------ one frame
    def reduce_path(self, path) -> tuple[FrameReport, Frame | None]:
        """Read and reduce one file; never raises for bad input."""
        name = Path(path).name
        try:
            frame = read_frame(path, time_stamp=self.station.camera.time_stamp)
        except FrameError as exc:
            return FrameReport(name, "error", exc.reason), None
        if frame.image_type != "light":
            return FrameReport(name, "calibration", f"{frame.image_type} frame"), frame
        try:
            return self.reduce_frame(frame), frame
        except FrameError as exc:
            return FrameReport(name, "error", exc.reason), frame
        except Exception as exc:  # a bug must not sink the batch: report it, go on
            log.exception("reducing %s failed", path)
            return FrameReport(name, "error", f"internal error: {type(exc).__name__}: {exc}"), frame

    def reduce_frame(self, frame: Frame) -> FrameReport:
        t_start = time.perf_counter()
        cam = self.station.camera
        opt = self.options
        report = FrameReport(frame.name, "unsolved")
        info = report.info
        notes = list(frame.notes)
        t_open = frame.start_utc + np.timedelta64(round(cam.shutter_latency_s * 1e6), "us")
        t_close = t_open + np.timedelta64(round(frame.exptime_s * 1e6), "us")
        report.mid_utc = t_open + (t_close - t_open) / 2
        info["utc_open"] = np.datetime_as_string(t_open, unit="us") + "Z"
        info["exptime_s"] = frame.exptime_s
        info["track_mode"] = frame.track_mode
        info["shape"] = list(frame.shape)
        notes += self._check_site(frame)
        data = self.calibration.apply(frame)
        saturation = self.saturation_adu
        if frame.saturation_adu:
            saturation = min(saturation, frame.saturation_adu * 0.98)
        extractor = SourceExtractor(
            fwhm_px=self.fwhm_guess_px,
            detect_sigma=opt.detect_sigma,
            saturation=saturation,
            box=128 if min(frame.shape) >= 1024 else 64,
        )
        ext = extractor(data, raw=frame.data)
        src = ext.sources
        trailed = ext.star_length_px > 0
        elongation = ext.star_elongation_px  # stars trailed by a few px: round-star path
        if trailed:
            psf_sigma = trail_width(ext)
        elif elongation > 0:
            psf_sigma = elongated_star_sigma(ext, self.fwhm_guess_px / 2.3548)
        else:
            psf_sigma = ext.fwhm_px / 2.3548
        info["sources"] = src.counts()
        info["background_adu"] = round(ext.background_median, 2)
        info["noise_adu"] = round(ext.noise_median, 3)
        info["fwhm_px"] = _num(2.3548 * psf_sigma, 3)
        info["star_trail_px"] = round(ext.star_length_px or elongation, 2)
        report.sources_table = np.column_stack(
            [src.x, src.y, src.flux, src.snr, src.length, src.kind.astype(float)]
        )
        scale = (
            frame.pixel_scale_arcsec()
            or _wcs_scale(frame.wcs)
            or self.station.pixel_scale_arcsec * frame.binning[0]
        )
        axis = self._optical_axis(frame)
        pointing = frame.pointing_deg
        if pointing is not None:
            info["pointing_deg"] = [round(pointing[0], 5), round(pointing[1], 5)]
        stars = src.subset(_usable_stars(src, frame.shape, ext))
        # trailed or elongated stars (rate tracking) place too loosely for a handful of them
        loose = trailed or elongation > 0
        sol = self._solve(
            stars, frame, pointing, scale, axis, report.mid_utc, info, known_geometry=not loose
        )
        if not sol.solved:
            report.reason = sol.reason
            info["stars_extracted"] = len(stars)
            info["notes"] = notes
            info["seconds"] = round(time.perf_counter() - t_start, 3)
            return report
        if np.isfinite(ext.fwhm_px) and not trailed and not elongation:
            self.fwhm_guess_px = 0.5 * self.fwhm_guess_px + 0.5 * ext.fwhm_px
        model = sol.model
        report.status = "solved"
        ny, nx = frame.shape
        centre = model.pixel_to_world((nx - 1) / 2.0, (ny - 1) / 2.0)
        report.centre_deg = (float(centre[0]), float(centre[1]))
        self._last = (sol.model, pointing or report.centre_deg)
        self._last_utc = report.mid_utc
        info.update(
            astrometric_rms_px=round(sol.rms_px, 4),
            astrometric_rms_arcsec=round(sol.rms_arcsec, 3),
            stars_matched=sol.n_matched,
            catalogue_stars_in_field=sol.n_catalogue_in_field,
            distortion=sol.distortion,
            centre_deg=[round(c, 6) for c in report.centre_deg],
            pixel_scale_arcsec=round(model.pixel_scale_arcsec(), 5),
            rotation_deg=round(_rotation_deg(model.cd), 3),
        )
        if pointing is not None:
            info["pointing_error_deg"] = round(_separation(pointing, report.centre_deg), 4)
        info["wcs"] = _wcs_json(model)
        if frame.wcs is not None:
            info["header_wcs_offset_px"] = _header_wcs_offset(frame.wcs, model, frame.shape)
            if info["header_wcs_offset_px"] > 2.0:
                notes.append(
                    f"header WCS is off by {info['header_wcs_offset_px']:.1f} px; not used"
                )
        info["fwhm_arcsec"] = _num(2.3548 * psf_sigma * scale, 3)
        zp = _zero_point(stars.flux[sol.image_index], sol.catalogue_mag)
        info["zero_point_mag"] = _num(zp, 3)
        flux_lim = 5.0 * ext.noise_median * math.sqrt(4 * math.pi) * psf_sigma
        if trailed or elongation:
            trail_px = ext.star_length_px or elongation
            flux_lim *= math.sqrt(1.0 + trail_px / (2 * math.sqrt(math.pi) * psf_sigma))
        info["limiting_mag"] = _num(zp - 2.5 * math.log10(flux_lim), 2) if zp == zp else None
        dets = frame_candidates(ext, psf_sigma, edge_margin=opt.edge_margin_px)
        report.solution = sol
        report.placement = dict(
            trail=(ext.star_length_px, ext.star_theta),
            t_open=t_open,
            t_close=t_close,
            zp=zp,
            scale=scale,
            trailed=trailed,
            psf_sigma=psf_sigma,
            elongation=elongation,
        )
        report.detections = dets
        self._place_all(report)
        if not trailed:
            self._pending_ext = TransientState(report, ext, psf_sigma, margin=opt.edge_margin_px)
        info["notes"] = notes
        info["seconds"] = round(time.perf_counter() - t_start, 3)
        return report

    def _solve(
        self, stars, frame: Frame, pointing, scale, axis, mid_utc, info, known_geometry=True
    ):
        """Plate-solve: the last frame's model, then around the pointing, then blind."""
        epoch = _jyear(mid_utc)
        args = dict(
            shape=frame.shape, scale_arcsec=scale, axis_px=axis, epoch_jyear=epoch,
            saturated=stars.nsat > 0,
        )  # fmt: skip
        xyf = (stars.x, stars.y, stars.flux)
        hyp = None
        if frame.wcs is not None:  # a hypothesis: the stars confirm it or it is set aside
            hyp = model_from_wcs(frame.wcs, frame.shape, axis)
            why = "unusable"
            if hyp is not None:
                sol = self.solver(*xyf, pointing_deg=hyp.crval, prior=hyp, vote=False, **args)
                if sol.solved and _confirmed(sol):
                    info["solve"] = "header WCS"
                    return sol
                why = sol.reason or f"{sol.n_matched} stars matched, too few"
            info["header_wcs"] = f"not confirmed by the stars ({why})"
        if pointing is not None:
            info["solve"] = "pointing"
            cd = self._known_geometry(hyp, scale) if known_geometry else None
            sol = self.solver(
                *xyf, pointing_deg=pointing, prior=self._prior(pointing), geometry_cd=cd, **args
            )
            if sol.solved and sol.distortion.startswith("none (known geometry"):
                info["solve"] = "pointing, known geometry"
            if sol.solved or not self.options.blind:
                return sol
            why = f"{sol.reason}; "
        else:
            info["solve"] = "previous frame"
            why = "no pointing in the header (RA/DEC, OBJCTRA/OBJCTDEC or a WCS); "
            if self._last is not None:  # a camera without telescope link: same field?
                model = self._last[0]
                if frame.track_mode == "stare":  # the sky drifts west at the sidereal rate
                    dt = (mid_utc - self._last_utc) / np.timedelta64(1, "s")
                    ra = (model.crval[0] + SIDEREAL_DEG_PER_S * dt) % 360.0
                    model = replace(model, crval=(ra, model.crval[1]))
                sol = self.solver(*xyf, pointing_deg=model.crval, prior=model, vote=False, **args)
                if sol.solved:
                    return sol
            if not self.options.blind:
                return PlateSolution(False, why + "blind solving is off")
        from aposos.station.blindsolve import MIN_STARS, BlindIndex, blind_solve, too_few_stars

        info["solve"] = "blind"
        ny, nx = frame.shape
        field_deg = min(nx, ny) * scale / 3600.0
        if stars.x.size < MIN_STARS:  # a blank or clouded frame: no index built for it
            sol = too_few_stars(stars.x.size)
        else:
            index = BlindIndex.cached(self.solver.catalogue, field_deg, epoch)
            sol = blind_solve(self.solver, index, *xyf, **args)
        if not sol.solved:
            sol.reason = why + sol.reason
        return sol

    def _known_geometry(self, header: TanSipModel | None, scale_arcsec: float):
        """The camera's pixel-to-sky matrix as far as it is known: the last solved frame's,
        else the header WCS's; None when neither agrees with the frame's scale (5 %)."""
        for model in (self._last[0] if self._last else None, header):
            if model is not None and abs(model.pixel_scale_arcsec() / scale_arcsec - 1) < 0.05:
                return model.cd
        return None

    def _check_site(self, frame: Frame) -> list[str]:
        if frame.site is None:
            return []
        s = self.station.site
        dlat = abs(frame.site.latitude_deg - s.latitude_deg)
        dlon = abs((frame.site.longitude_deg - s.longitude_deg + 180) % 360 - 180)
        if dlat < 0.05 and dlon < 0.05:
            return []
        flipped = abs((-frame.site.longitude_deg - s.longitude_deg + 180) % 360 - 180)
        if dlat < 0.05 and flipped < 0.05:
            return ["header longitude is west-positive; the station file's site is used"]
        return [
            f"header site ({frame.site.latitude_deg:.4f}, {frame.site.longitude_deg:.4f}) "
            f"differs from the station's ({s.latitude_deg:.4f}, {s.longitude_deg:.4f}); "
            "the station file's site is used"
        ]

    def _optical_axis(self, frame: Frame) -> tuple[float, float]:
        cam = self.station.camera
        bx, by = frame.binning
        w, h = cam.width_px / bx, cam.height_px / by
        ox, oy = frame.origin_xy
        ny, nx = frame.shape
        if (ox, oy) == (0.0, 0.0) and (nx, ny) != (round(w), round(h)):
            return ((nx - 1) / 2.0, (ny - 1) / 2.0)  # not a known cutout: assume centred
        return ((w - 1) / 2.0 - ox, (h - 1) / 2.0 - oy)

    def _prior(self, pointing) -> TanSipModel | None:
        if self._last is None:
            return None
        model, last_pointing = self._last
        if _separation(pointing, last_pointing) > 2.0:
            return None
        # keep the offset between commanded and true pointing, move with the command
        dra = (pointing[0] - last_pointing[0] + 180) % 360 - 180
        ddec = pointing[1] - last_pointing[1]
        crval = ((model.crval[0] + dra) % 360.0, max(min(model.crval[1] + ddec, 89.999), -89.999))
        return TanSipModel(crval, model.crpix, model.cd.copy(), model.a.copy(), model.b.copy())

    def _place_all(self, report: FrameReport) -> None:
        sol, p = report.solution, report.placement
        wcs_sigma = sol.rms_arcsec * math.sqrt(6.0 / max(sol.n_matched, 6))
        pointing = report.info.get("pointing_deg")
        if pointing is not None and _separation(pointing, report.centre_deg) > 5.0:
            pointing = None  # not this frame's pointing
        error_xy = None
        if pointing is not None:
            xi, eta, _ = tan_project(*report.centre_deg, *pointing)
            error_xy = (float(xi) * 3600.0 / p["scale"], float(eta) * 3600.0 / p["scale"])
        for d in report.detections:
            self._place(d, sol.model, wcs_sigma=wcs_sigma, **p)
            if pointing is not None:
                xi, eta, _ = tan_project(*d.radec_mid, *pointing)
                d.mount_xy = (float(xi) * 3600.0 / p["scale"], float(eta) * 3600.0 / p["scale"])
                d.pointing_error_xy = error_xy

    def _place(
        self, d, model, *, trail, t_open, t_close, zp, scale, wcs_sigma, trailed, psf_sigma,
        elongation=0.0,
    ):  # fmt: skip
        d.t_open, d.t_close = t_open, t_close
        d.psf_sigma_px = psf_sigma
        d.scale_arcsec = scale
        ra, dec = model.pixel_to_world(d.x, d.y)
        d.radec_mid = (float(ra), float(dec))
        exptime = max(d.exptime_s, 1e-6)
        timing = self.options.timing_sigma_s
        if d.kind == "streak" and not trailed:
            ra_a, dec_a = model.pixel_to_world(d.xa, d.ya)
            ra_b, dec_b = model.pixel_to_world(d.xb, d.yb)
            d.radec_a, d.radec_b = (float(ra_a), float(dec_a)), (float(ra_b), float(dec_b))
            rate = math.hypot(d.xb - d.xa, d.yb - d.ya) * scale / exptime  # arcsec/s
            d.velocity_sigma = math.sqrt(2) * d.sigma_end_px * scale / exptime / 3600.0 + 1e-5
            d.sigma_end_arcsec = math.hypot(
                math.hypot(d.sigma_end_px * scale, wcs_sigma), rate * timing
            )
            if elongation > 0:
                # the frame's mid-exposure solution; at the ends the mount has moved
                # the sky by half the stars' elongation (one way or the other)
                d.sigma_end_arcsec = math.hypot(d.sigma_end_arcsec, 0.5 * elongation * scale)
            if d.clipped_a or d.clipped_b:
                _note(d, "streak runs off the frame: clipped end not reported")
        elif d.kind == "point" and trailed:
            tx = trail[0] * math.cos(trail[1])
            ty = trail[0] * math.sin(trail[1])
            ra_a, dec_a = model.pixel_to_world(d.x + tx / 2, d.y + ty / 2)
            ra_b, dec_b = model.pixel_to_world(d.x - tx / 2, d.y - ty / 2)
            d.radec_a, d.radec_b = (float(ra_a), float(dec_a)), (float(ra_b), float(dec_b))
            rate = trail[0] * scale / exptime
            d.velocity_sigma = d.drift_px * scale / exptime / 3600.0
        elif d.kind == "streak":  # a streak among trailed stars: midpoint only
            rate = math.hypot(d.xb - d.xa, d.yb - d.ya) * scale / exptime
            d.velocity_sigma = 3.0  # deg/s: no velocity information
            _note(d, "streak in a frame of trailed stars: midpoint only")
        else:  # a point among round stars moves less than a PSF width
            rate = 0.0
            d.velocity_sigma = 3.0 * 2.3548 * d.width_px * scale / exptime / 3600.0
        d.sigma_arcsec = math.hypot(math.hypot(d.sigma_px * scale, wcs_sigma), rate * timing)
        if zp == zp and d.flux > 0:
            d.mag = zp - 2.5 * math.log10(d.flux)

    # ------------------------------------------------------------------ a batch
    def run(self, paths, *, progress: bool = True, archive=None) -> Reduction:
        """Reduce files (in time order of their names) and link the detections."""
        from tqdm import tqdm

        batch = self.batch(archive=archive)
        for path in tqdm(paths, desc="reduce", unit="frame", disable=not progress):
            batch.add(path)
        return batch.finish()

    def batch(self, *, archive=None) -> ReductionBatch:
        """Frames reduced one by one as they come, linked at the end: the same result
        as :meth:`run` over the same files, with the work spread over the wait."""
        return ReductionBatch(self, archive)

    def _add_transients(self, state: TransientState) -> None:
        """Add the moving points found by comparing a frame with its neighbours."""
        if state.absent is None:
            return
        for d in (new := transient_points(state)):
            d.frame = state.frame_index
        state.report.detections.extend(new)
        self._place_all(state.report)
        state.report.info["transients"] = state.report.info.get("transients", 0) + len(new)

    def _shared_distortion(self, reports: list[FrameReport]) -> None:
        """Fit one radial distortion for the camera over all solved frames, then refit
        the frames with it (sparse fields cannot fit it alone)."""
        solved = [r for r in reports if r.status == "solved" and r.solution is not None]
        cam = self.station.camera
        corner = 0.5 * math.hypot(cam.width_px, cam.height_px)
        k = estimate_radial_k([r.solution for r in solved], k_max=5.0 / corner**3)
        if k is None:
            return
        for r in solved:
            sol = refit(r.solution, k)
            if sol is r.solution:
                continue
            r.solution = sol
            r.info.update(
                wcs=_wcs_json(sol.model),
                astrometric_rms_px=round(sol.rms_px, 4),
                astrometric_rms_arcsec=round(sol.rms_arcsec, 3),
                distortion=sol.distortion,
                radial_k_per_px2=float(f"{k:.4e}"),
            )
            self._place_all(r)


class ReductionBatch:
    """A :meth:`Reducer.run` in steps: :meth:`add` each frame, then :meth:`finish`."""

    def __init__(self, reducer: Reducer, archive=None):
        self.reducer = reducer
        self.archive = archive
        self.reports: list[FrameReport] = []
        self.keys: list = []
        self.previous: TransientState | None = None
        self.finished = False

    def __len__(self) -> int:
        return len(self.reports)

    def add(self, path) -> FrameReport:
        """Reduce one frame (and compare it with the one before)."""
        if self.finished:
            raise RuntimeError("this batch is finished")
        red = self.reducer
        i = len(self.reports)
        red._pending_ext = None
        report, frame = red.reduce_path(path)
        for d in report.detections:
            d.frame = i
        self.reports.append(report)
        archive = self.archive
        self.keys.append(archive.add(path, frame, report) if archive is not None else None)
        current, red._pending_ext = red._pending_ext, None
        previous = self.previous
        if current is not None:
            current.frame_index = i
            if previous is not None and _same_field(previous.report, report, red.options):
                previous.compare(current)
                current.compare(previous)
            if previous is not None:
                red._add_transients(previous)
        elif previous is not None:
            red._add_transients(previous)
        self.previous = current
        return report

    def finish(self) -> Reduction:
        """Link the frames added into tracklets (once)."""
        if self.finished:
            raise RuntimeError("this batch is finished")
        self.finished = True
        red = self.reducer
        if self.previous is not None:
            red._add_transients(self.previous)
        red._shared_distortion(self.reports)
        tracklets, members, faps = link_frames(
            self.reports, red.station.code, max_gap_s=red.options.max_gap_s,
            min_points=red.options.min_points,
        )  # fmt: skip
        result = Reduction(
            tracklets, self.reports, red.calibration.summary(), members, faps,
            star_catalogue=star_catalogue_label(red.solver.catalogue),
        )  # fmt: skip
        if self.archive is not None:
            entries = result.to_json()["frames"]
            for key, entry in zip(self.keys, entries, strict=True):
                self.archive.update_report(key, entry)
        return result


def _confirmed(sol: PlateSolution) -> bool:
    """A header-WCS solution the stars bear out: most catalogue stars in the field found,
    at sub-pixel residuals (four chance coincidences within 2.5 px are rare)."""
    need = max(4, min(8, int(0.3 * sol.n_catalogue_in_field)))
    return sol.n_matched >= need and sol.rms_px < 1.0


def _same_field(a: FrameReport, b: FrameReport, options) -> bool:
    if a.centre_deg is None or b.centre_deg is None:
        return False
    gap = abs((b.mid_utc - a.mid_utc) / np.timedelta64(1, "s"))
    return _separation(a.centre_deg, b.centre_deg) < 0.2 and gap < options.max_gap_s


def _note(d: Detection, text: str) -> None:
    if text not in d.notes:
        d.notes.append(text)


def _usable_stars(src, shape, ext) -> np.ndarray:
    """Sources to match with the catalogue: stars, saturated stars (their footprint
    centroid is good: the catalogue is mostly bright stars), compact others."""
    ny, nx = shape
    compact_other = (src.kind == OTHER) & (src.length < 0.5 * ext.star_length_px + 6.0)
    keep = (src.kind == STAR) | (src.kind == SATURATED) | compact_other
    half = 0.5 * ext.star_length_px + 3.0
    keep &= (src.bbox[:, 0] > 0) & (src.bbox[:, 2] > 0)
    keep &= (src.bbox[:, 1] < nx - 1) & (src.bbox[:, 3] < ny - 1)
    keep &= (src.x > half) & (src.x < nx - 1 - half) & (src.y > half) & (src.y < ny - 1 - half)
    return keep


def _wcs_scale(wcs) -> float | None:
    """Pixel scale (arcsec) of a header WCS, when it has a sane one."""
    if wcs is None:
        return None
    try:
        from astropy.wcs.utils import proj_plane_pixel_scales

        scale = float(np.sqrt(np.prod(proj_plane_pixel_scales(wcs.celestial)))) * 3600.0
    except Exception:  # astropy raises several kinds for a bad WCS
        return None
    return scale if 0.01 < scale < 600.0 else None


def _jyear(t: np.datetime64) -> float:
    days = (t - np.datetime64("2000-01-01T12:00:00", "us")) / np.timedelta64(1, "D")
    return 2000.0 + float(days) / 365.25


def _separation(a, b) -> float:
    ra1, d1, ra2, d2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    c = math.sin(d1) * math.sin(d2) + math.cos(d1) * math.cos(d2) * math.cos(ra1 - ra2)
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def _rotation_deg(cd) -> float:
    """Angle of the pixel +y axis from celestial north, east of north."""
    return math.degrees(math.atan2(cd[0, 1], cd[1, 1]))


def _wcs_json(model: TanSipModel) -> dict:
    """The fitted WCS as FITS keywords (RA---TAN-SIP, 1-based CRPIX)."""
    header = model.to_astropy().to_header(relax=True)
    return {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
            for k, v in header.items() if k not in ("WCSAXES", "DATE-OBS", "MJD-OBS")}  # fmt: skip


def _zero_point(flux, mag) -> float:
    ok = (flux > 0) & np.isfinite(mag)
    if ok.sum() < 3:
        return float("nan")
    zp = mag[ok] + 2.5 * np.log10(flux[ok])
    med = np.median(zp)
    mad = 1.4826 * np.median(np.abs(zp - med))
    good = np.abs(zp - med) < max(3 * mad, 0.1)
    return float(np.median(zp[good]))


def _header_wcs_offset(wcs, model: TanSipModel, shape) -> float:
    ny, nx = shape
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, 5), np.linspace(0, ny - 1, 5))
    ra, dec = model.pixel_to_world(gx.ravel(), gy.ravel())
    try:
        hx, hy = wcs.all_world2pix(ra, dec, 0)
    except Exception:  # astropy raises several kinds for bad WCS
        return float("inf")
    return round(float(np.median(np.hypot(hx - gx.ravel(), hy - gy.ravel()))), 3)


def star_catalogue_label(catalogue) -> str:
    """Which reference stars: the catalogue's name and, for the deep store, what it holds."""
    name = getattr(catalogue, "name", type(catalogue).__name__)
    store = getattr(catalogue, "store_description", "")
    return f"{name} ({len(catalogue):,} stars{'; ' + store if store else ''})"


def reduce_frames(
    inputs,
    station,
    *,
    calib=None,
    out_dir=None,
    archive=None,
    options: ReduceOptions | None = None,
    progress: bool = False,
) -> Reduction:
    """Reduce FITS files or folders of them; write outputs when ``out_dir`` is given.

    Parameters
    ----------
    inputs : a path or a list of paths (files or folders).
    station : :class:`aposos.station.config.StationConfig`.
    calib : folder of bias/dark/flat frames; calibration frames among the inputs are
        used too.
    out_dir : where ``tracklets.tdm``, ``tracklets.iod`` and ``reduction.json`` go.
    archive : path of a zarr archive to write frames and products into.
    """
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    paths: list[Path] = []
    for p in inputs:
        paths += find_fits(p)
    cal_frames = []
    cal_problems = []
    if calib is not None:
        for p in find_fits(calib):
            try:
                f = read_frame(p, time_stamp=station.camera.time_stamp, require_time=False)
            except FrameError as exc:
                cal_problems.append(str(exc))
                continue
            if f.image_type != "light":
                cal_frames.append(f)
    # calibration frames mixed in with the lights
    light_paths = []
    for p in paths:
        kind = read_image_type(p)
        if kind in (None, "light"):
            light_paths.append(p)  # unreadable files are reported by the reduction
            continue
        try:
            cal_frames.append(read_frame(p, require_time=False))
        except FrameError as exc:
            cal_problems.append(str(exc))
    calibration = MasterCalibration.from_frames(cal_frames)
    calibration.problems = cal_problems + calibration.problems
    del cal_frames
    reducer = Reducer(station, calibration=calibration, options=options)
    store = None
    if archive is not None:
        from aposos.station.archive import FrameArchive

        store = FrameArchive.create(archive)
    result = reducer.run(light_paths, progress=progress, archive=store)
    if out_dir is not None:
        write_outputs(result, out_dir, station)
    return result


def write_outputs(result: Reduction, out_dir, station) -> dict[str, Path]:
    """Write ``tracklets.tdm``, ``tracklets.iod`` and ``reduction.json``.

    The exchange files carry arcs (two observations or more; the data center refuses a
    single position); a lone position stays in ``reduction.json``.
    """
    from aposos.formats.iod import write_iod
    from aposos.formats.tdm import write_tdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "tdm": out / "tracklets.tdm",
        "iod": out / "tracklets.iod",
        "json": out / "reduction.json",
    }
    arcs = [t for t in result.tracklets if len(t) >= 2]
    paths["tdm"].write_text(write_tdm(arcs, format="kvn") if arcs else "")
    paths["iod"].write_text(
        write_iod(arcs, iod_station=station.site_info.iod_station) if arcs else ""
    )
    paths["json"].write_text(json.dumps(result.to_json(), indent=1) + "\n")
    return paths
