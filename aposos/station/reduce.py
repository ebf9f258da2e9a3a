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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aposos.model import Tracklet
from aposos.station.astrometry import PlateSolver, TanSipModel, estimate_radial_k, refit
from aposos.station.calibrate import MasterCalibration, find_fits
from aposos.station.extract import OTHER, POINT, SATURATED, STAR, STREAK, SourceExtractor
from aposos.station.fitsframe import Frame, FrameError, read_frame, read_image_type
from aposos.station.tracklets import Detection, fit_point, fit_streak, link

__all__ = ["FrameReport", "ReduceOptions", "Reducer", "Reduction", "reduce_frames"]

log = logging.getLogger(__name__)


@dataclass
class ReduceOptions:
    """Knobs of the reduction (defaults suit the APOSOS stations)."""

    catalogue: str = "both"
    pointing_tolerance_deg: float = 1.5
    detect_sigma: float = 5.0
    timing_sigma_s: float = 0.002  # shutter timing uncertainty after latency correction
    max_gap_s: float = 120.0  # largest gap between frames of one tracklet
    min_points: int = 3  # frames needed for a tracklet of points
    edge_margin_px: float = 3.0  # a streak end this close to the edge is clipped


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
            },
            "calibration": self.calibration,
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
        self.solver = PlateSolver(
            catalogue, pointing_tolerance_deg=self.options.pointing_tolerance_deg
        )
        cam = station.camera
        self.saturation_adu = (
            min(float(cam.saturation_adu), cam.bias_adu + cam.full_well / cam.gain_e_per_adu) * 0.98
        )
        self.fwhm_guess_px = 2.0 / station.pixel_scale_arcsec * 1.0 + 1.5
        self._last: tuple[TanSipModel, tuple[float, float]] | None = None
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
        psf_sigma = (ext.fwhm_px / 2.3548) if not trailed else _trail_width(ext)
        info["sources"] = src.counts()
        info["background_adu"] = round(ext.background_median, 2)
        info["noise_adu"] = round(ext.noise_median, 3)
        info["fwhm_px"] = _num(2.3548 * psf_sigma, 3)
        info["star_trail_px"] = round(ext.star_length_px, 2)
        report.sources_table = np.column_stack(
            [src.x, src.y, src.flux, src.snr, src.length, src.kind.astype(float)]
        )
        scale = frame.pixel_scale_arcsec() or self.station.pixel_scale_arcsec * frame.binning[0]
        axis = self._optical_axis(frame)
        pointing = frame.pointing_deg
        if pointing is None:
            report.reason = "no pointing in the header (RA/DEC, OBJCTRA/OBJCTDEC or a WCS)"
            info["notes"] = notes
            return report
        info["pointing_deg"] = [round(pointing[0], 5), round(pointing[1], 5)]
        stars = src.subset(_usable_stars(src, frame.shape, ext))
        epoch = _jyear(report.mid_utc)
        prior = self._prior(pointing)
        sol = self.solver(
            stars.x,
            stars.y,
            stars.flux,
            shape=frame.shape,
            pointing_deg=pointing,
            scale_arcsec=scale,
            axis_px=axis,
            epoch_jyear=epoch,
            prior=prior,
            saturated=stars.nsat > 0,
        )
        if not sol.solved:
            report.reason = sol.reason
            info["stars_extracted"] = len(stars)
            info["notes"] = notes
            info["seconds"] = round(time.perf_counter() - t_start, 3)
            return report
        self._last = (sol.model, pointing)
        if np.isfinite(ext.fwhm_px) and not trailed:
            self.fwhm_guess_px = 0.5 * self.fwhm_guess_px + 0.5 * ext.fwhm_px
        model = sol.model
        report.status = "solved"
        ny, nx = frame.shape
        centre = model.pixel_to_world((nx - 1) / 2.0, (ny - 1) / 2.0)
        report.centre_deg = (float(centre[0]), float(centre[1]))
        info.update(
            astrometric_rms_px=round(sol.rms_px, 4),
            astrometric_rms_arcsec=round(sol.rms_arcsec, 3),
            stars_matched=sol.n_matched,
            catalogue_stars_in_field=sol.n_catalogue_in_field,
            distortion=sol.distortion,
            centre_deg=[round(c, 6) for c in report.centre_deg],
            pointing_error_deg=round(_separation(pointing, report.centre_deg), 4),
            pixel_scale_arcsec=round(model.pixel_scale_arcsec(), 5),
            rotation_deg=round(_rotation_deg(model.cd), 3),
        )
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
        if trailed:
            flux_lim *= math.sqrt(1.0 + ext.star_length_px / (2 * math.sqrt(math.pi) * psf_sigma))
        info["limiting_mag"] = _num(zp - 2.5 * math.log10(flux_lim), 2) if zp == zp else None
        dets = self._candidates(ext, psf_sigma, frame, notes)
        report.solution = sol
        report.placement = dict(
            trail=(ext.star_length_px, ext.star_theta),
            t_open=t_open,
            t_close=t_close,
            zp=zp,
            scale=scale,
            trailed=trailed,
        )
        report.detections = dets
        self._place_all(report)
        if not trailed:
            self._pending_ext = _TransientState(report, ext, psf_sigma, margin=opt.edge_margin_px)
        info["notes"] = notes
        info["seconds"] = round(time.perf_counter() - t_start, 3)
        return report

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

    def _candidates(self, ext, psf_sigma, frame, notes) -> list[Detection]:
        src = ext.sources
        noise = max(ext.noise_median, 1e-3)
        ny, nx = frame.shape
        out = []
        margin = self.options.edge_margin_px + 2.0 * psf_sigma
        for i in np.nonzero((src.kind == STREAK) | (src.kind == POINT))[0]:
            if src.kind[i] == STREAK:
                fit = fit_streak(
                    ext.subtracted,
                    ext.labels,
                    src.label[i],
                    (src.fx[i], src.fy[i]),
                    src.theta[i],
                    src.length[i],
                    psf_sigma,
                    noise,
                    ext.saturated,
                )
                # sharper than the PSF across: a cosmic-ray track (halos widen bright ones)
                if fit is None or not (src.nsat[i] or fit["sigma"] > 0.55 * psf_sigma):
                    src.kind[i] = OTHER
                    continue
                if fit["length"] < 2.5 * psf_sigma * 2.3548:
                    src.kind[i] = OTHER  # too short to time its ends: a moving point, maybe
                    continue
                d = Detection(
                    frame=-1,
                    kind="streak",
                    x=fit["x"],
                    y=fit["y"],
                    sigma_px=fit["sigma_mid"],
                    flux=fit["flux"],
                    snr=float(src.snr[i]),
                    width_px=fit["sigma"],
                    xa=fit["xa"],
                    ya=fit["ya"],
                    xb=fit["xb"],
                    yb=fit["yb"],
                    sigma_end_px=fit["sigma_end"],
                    clipped_a=_near_edge(fit["xa"], fit["ya"], nx, ny, margin),
                    clipped_b=_near_edge(fit["xb"], fit["yb"], nx, ny, margin),
                )
            else:
                fit = fit_point(
                    ext.subtracted,
                    ext.labels,
                    src.label[i],
                    src.x[i],
                    src.y[i],
                    psf_sigma,
                    noise,
                    ext.saturated,
                )
                if fit is None or not (
                    src.nsat[i] or _plausible_width(fit["sigma"], psf_sigma, trailed=True)
                ):
                    continue
                if _near_edge(fit["x"], fit["y"], nx, ny, margin):
                    continue
                d = Detection(
                    frame=-1,
                    kind="point",
                    x=fit["x"],
                    y=fit["y"],
                    sigma_px=fit["sigma_mid"],
                    flux=fit["flux"],
                    snr=float(src.snr[i]),
                    width_px=fit["sigma"],
                )
            out.append(d)
        return out

    def _place_all(self, report: FrameReport) -> None:
        sol, p = report.solution, report.placement
        wcs_sigma = sol.rms_arcsec * math.sqrt(6.0 / max(sol.n_matched, 6))
        for d in report.detections:
            self._place(d, sol.model, wcs_sigma=wcs_sigma, **p)

    def _place(self, d, model, *, trail, t_open, t_close, zp, scale, wcs_sigma, trailed):
        d.t_open, d.t_close = t_open, t_close
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
            if d.clipped_a or d.clipped_b:
                _note(d, "streak runs off the frame: clipped end not reported")
        elif d.kind == "point" and trailed:
            tx = trail[0] * math.cos(trail[1])
            ty = trail[0] * math.sin(trail[1])
            ra_a, dec_a = model.pixel_to_world(d.x + tx / 2, d.y + ty / 2)
            ra_b, dec_b = model.pixel_to_world(d.x - tx / 2, d.y - ty / 2)
            d.radec_a, d.radec_b = (float(ra_a), float(dec_a)), (float(ra_b), float(dec_b))
            rate = trail[0] * scale / exptime
            d.velocity_sigma = max(1.0, 2.3548 * d.width_px) * scale / exptime / 3600.0
        elif d.kind == "streak":  # a streak among trailed stars: midpoint only
            rate = math.hypot(d.xb - d.xa, d.yb - d.ya) * scale / exptime
            d.velocity_sigma = 3.0  # deg/s: no velocity information
            d.clipped_a = d.clipped_b = True
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

        reports: list[FrameReport] = []
        keys = []
        previous: _TransientState | None = None
        for i, path in enumerate(tqdm(paths, desc="reduce", unit="frame", disable=not progress)):
            self._pending_ext = None
            report, frame = self.reduce_path(path)
            for d in report.detections:
                d.frame = i
            reports.append(report)
            keys.append(archive.add(path, frame, report) if archive is not None else None)
            current, self._pending_ext = self._pending_ext, None
            if current is not None:
                current.frame_index = i
                if previous is not None and _same_field(previous.report, report, self.options):
                    previous.compare(current)
                    current.compare(previous)
                if previous is not None:
                    self._add_transients(previous)
            elif previous is not None:
                self._add_transients(previous)
            previous = current
        if previous is not None:
            self._add_transients(previous)
        self._shared_distortion(reports)
        tracklets, members = self._link(reports)
        result = Reduction(tracklets, reports, self.calibration.summary(), members)
        if archive is not None:
            entries = result.to_json()["frames"]
            for key, entry in zip(keys, entries, strict=True):
                archive.update_report(key, entry)
        return result

    def _add_transients(self, state: _TransientState) -> None:
        """Point detections for sources seen at no star's place in the neighbour frames."""
        if state.absent is None:
            return
        ext, report = state.ext, state.report
        src = ext.sources
        ny, nx = ext.subtracted.shape
        noise = max(ext.noise_median, 1e-3)
        margin = state.margin + 2.0 * state.psf_sigma
        new = []
        for i in np.nonzero(state.absent)[0]:
            fit = fit_point(
                ext.subtracted, ext.labels, src.label[i], src.x[i], src.y[i], state.psf_sigma, noise
            )
            if fit is None or not _plausible_width(fit["sigma"], state.psf_sigma):
                continue
            if _near_edge(fit["x"], fit["y"], nx, ny, margin):
                continue
            d = Detection(
                frame=state.frame_index,
                kind="point",
                x=fit["x"],
                y=fit["y"],
                sigma_px=fit["sigma_mid"],
                flux=fit["flux"],
                snr=float(src.snr[i]),
                width_px=fit["sigma"],
            )
            d.notes.append("moving point: at no star's place in the neighbouring frames")
            new.append(d)
        report.detections.extend(new)
        self._place_all(report)
        report.info.setdefault("transients", 0)
        report.info["transients"] += len(new)

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

    def _link(self, reports: list[FrameReport]):
        solved = [r for r in reports if r.status == "solved"]
        solved.sort(key=lambda r: r.mid_utc)
        groups: list[list[FrameReport]] = []
        for r in solved:
            g = groups[-1] if groups else None
            if (
                g
                and _separation(g[-1].centre_deg, r.centre_deg) < 1.0
                and (r.mid_utc - g[-1].mid_utc) / np.timedelta64(1, "s") < self.options.max_gap_s
            ):
                g.append(r)
            else:
                groups.append([r])
        tracklets, members = [], []
        for g in groups:
            dets = [
                d
                for r in g
                for d in r.detections
                if not any(n.startswith("static") for n in d.notes)
            ]
            times = np.array([r.mid_utc for r in g])
            for track in link(
                dets, max_gap_s=self.options.max_gap_s, min_points=self.options.min_points
            ):
                if not _credible(track, times):
                    continue
                t = _to_tracklet(self.station.code, track)
                if t is not None:
                    tracklets.append(t)
                    members.append(track.members)
        return tracklets, members


def _credible(track, frame_times: np.ndarray) -> bool:
    """Tracks made only of points must show up in most frames they span, clearly.

    Noise peaks and cosmic rays line up by chance across a long sequence now and
    then, but not in most consecutive frames at a good S/N.
    """
    if any(d.kind == "streak" and d.radec_a is not None for d in track.members):
        return True  # streaks with ends: their lengths and directions already agreed
    t0, t1 = track.members[0].t_mid, track.members[-1].t_mid
    spanned = int(np.sum((frame_times >= t0) & (frame_times <= t1)))
    snr = float(np.median([d.snr for d in track.members]))
    return len(track.members) >= 0.6 * spanned and snr >= 7.0


def _to_tracklet(code: str, track) -> Tracklet | None:
    utc, ra, dec, sig, mag = [], [], [], [], []
    lone = len(track.members) == 1
    for d, fwd in zip(track.members, track.forward, strict=True):
        clipped = d.clipped_a or d.clipped_b
        if d.kind == "streak" and d.radec_a is not None and not lone:
            ends = [(d.radec_a, d.clipped_a), (d.radec_b, d.clipped_b)]
            if not fwd:
                ends.reverse()
            for (radec, clip), when in zip(ends, (d.t_open, d.t_close), strict=True):
                if not clip:
                    utc.append(when)
                    ra.append(radec[0])
                    dec.append(radec[1])
                    sig.append(d.sigma_end_arcsec)
                    mag.append(d.mag)
        if d.kind == "point" or not clipped:
            utc.append(d.t_mid)
            ra.append(d.radec_mid[0])
            dec.append(d.radec_mid[1])
            sig.append(d.sigma_arcsec)
            mag.append(d.mag)
    if not utc:
        return None
    return Tracklet(code, np.array(utc, "datetime64[us]"), ra, dec, sig, mag)


class _TransientState:
    """A solved frame of round stars kept until its neighbours are known.

    ``absent`` marks the frame's star-like sources that no source of any neighbour
    frame covers (at the same place on the sky): moving objects too slow to streak,
    noise peaks, cosmic rays that look like stars. Linking sorts them out.
    """

    def __init__(self, report, ext, psf_sigma, *, margin):
        self.report = report
        self.ext = ext
        self.psf_sigma = psf_sigma
        self.margin = margin
        self.frame_index = -1
        self.absent = None
        src = ext.sources
        compact = src.length < 3.0 * 2.3548 * psf_sigma + 6.0
        self.candidates = ((src.kind == STAR) | (src.kind == OTHER)) & (src.snr >= 5.0) & compact
        ra, dec = report.solution.model.pixel_to_world(src.x, src.y)
        self.radec = np.stack([np.atleast_1d(ra), np.atleast_1d(dec)], axis=1)

    def compare(self, other: _TransientState) -> None:
        """Update ``absent`` with the neighbour frame ``other``.

        Present means the neighbour's matched-filter S/N at the same sky position (best
        of 3 x 3 pixels) reaches a quarter of this source's S/N and at least 2.5: a star
        at the detection limit here is almost always above that there, while a moving
        object has left (its own footprint may still reach the spot, its peak does not).
        """
        model = other.report.solution.model
        px, py = model.world_to_pixel(self.radec[:, 0], self.radec[:, 1])
        labels = other.ext.labels
        snr = other.ext.snr_image
        ny, nx = labels.shape
        inside = (px > 2) & (px < nx - 3) & (py > 2) & (py < ny - 3)
        level = np.zeros(px.size)
        ix = np.clip(np.round(px).astype(np.int64), 1, nx - 2)
        iy = np.clip(np.round(py).astype(np.int64), 1, ny - 2)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                level = np.maximum(level, snr[iy + dy, ix + dx])
        covered = level >= np.maximum(2.5, 0.25 * self.ext.sources.snr)
        missing = ~covered & inside & self.candidates
        self.absent = missing if self.absent is None else (self.absent & missing)
        # streaks found at the same place in a neighbour are fixed features (spikes,
        # bleed trails, star chains), not moving objects
        for d in self.report.detections:
            if d.kind != "streak" or d.radec_a is None:
                continue
            pts = np.array([d.radec_a, d.radec_mid, d.radec_b])
            qx, qy = model.world_to_pixel(pts[:, 0], pts[:, 1])
            # pixel centres round to the nearest index: keep them inside the frame
            ok = (qx >= -0.5) & (qx < nx - 0.5) & (qy >= -0.5) & (qy < ny - 0.5)
            hits = sum(
                labels[int(round(b)), int(round(a))] != 0
                for a, b in zip(qx[ok], qy[ok], strict=True)
            )
            if ok.sum() >= 2 and hits >= 2:
                d.notes.append("static: also in a neighbouring frame")


def _same_field(a: FrameReport, b: FrameReport, options) -> bool:
    if a.centre_deg is None or b.centre_deg is None:
        return False
    gap = abs((b.mid_utc - a.mid_utc) / np.timedelta64(1, "s"))
    return _separation(a.centre_deg, b.centre_deg) < 0.2 and gap < options.max_gap_s


def _note(d: Detection, text: str) -> None:
    if text not in d.notes:
        d.notes.append(text)


def _trail_width(ext) -> float:
    """PSF sigma of a frame of trailed stars, from segment fits across bright trails."""
    s = ext.sources
    star = (s.kind == STAR) & (s.nsat == 0) & (s.snr > 20)
    idx = np.nonzero(star)[0]
    idx = idx[np.argsort(-s.snr[idx])][:7]
    noise = max(ext.noise_median, 1e-3)
    guess = float(np.median(s.width[idx])) if idx.size else 1.5
    sig = []
    for i in idx:
        fit = fit_streak(
            ext.subtracted, ext.labels, s.label[i], (s.fx[i], s.fy[i]), s.theta[i],
            s.length[i], max(guess, 0.7), noise,
        )  # fmt: skip
        if fit is not None and 0.2 < fit["sigma"] < 10:
            sig.append(fit["sigma"])
    if len(sig) >= 3:
        return float(np.median(sig))
    return float(np.clip(guess, 0.6, 10.0))


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


def _plausible_width(sigma: float, psf_sigma: float, trailed: bool = False) -> bool:
    # trails overstate the PSF width a little; keep only the sharpest out
    low = 0.3 if trailed else 0.55 * psf_sigma
    return low < sigma < 2.0 * psf_sigma + 0.5


def _near_edge(x, y, nx, ny, margin) -> bool:
    return bool(x < margin or y < margin or x > nx - 1 - margin or y > ny - 1 - margin)


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
    """Write ``tracklets.tdm``, ``tracklets.iod`` and ``reduction.json``."""
    from aposos.formats.iod import write_iod
    from aposos.formats.tdm import write_tdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "tdm": out / "tracklets.tdm",
        "iod": out / "tracklets.iod",
        "json": out / "reduction.json",
    }
    if result.tracklets:
        paths["tdm"].write_text(write_tdm(result.tracklets, format="kvn"))
    else:
        paths["tdm"].write_text("")
    paths["iod"].write_text(
        write_iod(result.tracklets, iod_station=station.site_info.iod_station)
        if result.tracklets
        else ""
    )
    paths["json"].write_text(json.dumps(result.to_json(), indent=1) + "\n")
    return paths
