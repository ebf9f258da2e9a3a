"""Vectorised SGP4/SDP4: blocks of objects processed in SIMD lanes.

The same arithmetic as the scalar kernel in :mod:`aposos.orbit.sgp4`, rearranged
so that LLVM vectorises it across objects:

* each block of :data:`BLOCK` objects owns one flat work array: the element
  constants, then the intermediate quantities, one row of lanes each at constant
  offsets (so the compiler proves rows never overlap and needs no runtime
  alias checks);
* every branch becomes a select; sine and cosine come from
  :func:`aposos.orbit.polymath.sincos`, ``atan2`` from
  :func:`aposos.orbit.polymath.atan2`;
* ``(xke / n)^(2/3)`` is hoisted per object, times a Newton cube root of the
  small ratio when the resonance changes ``n``;
* the ``atan2`` of the argument of latitude is replaced by rotating the
  (sin u, cos u) pair by the short-period correction;
* Kepler's equation and the resonance integrator run the reference's iterations
  with a per-lane "still active" mask, until no lane is;
* the resonance state (atime, xli, xni) stays in the work array from one time
  to the next, as the reference carries it in the satrec.

The blocks trust their times: :func:`aposos.orbit.propagation.propagate_packed` sends
a call with a time beyond the reference kernel's bound (code 7) to the reference kernel,
so the lane-masked resonance loop never meets one.

Blocks hold one kind of object (near-earth; deep space without resonance;
24 h resonance; 12 h resonance) and are shuffled so that both threads of the
``prange`` get a fair mix.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from aposos.orbit import sgp4 as s4
from aposos.orbit.jit import inline_kernel, kernel, parallel_kernel
from aposos.orbit.polymath import atan2, cfmod, sincos

BLOCK = 64

(
    S_AXNL, S_AYNL, S_U, S_EO1, S_AM, S_NM, S_NODE, S_ERR, S_SIN, S_COS, S_ACT,
    S_XINCP, S_SINIP, S_COSIP, S_CON41, S_X1MTH2, S_X7THM1,
    S_T, S_EM, S_ARGPM, S_INCLM, S_MM, S_TEMPA, S_TEMPE, S_TEMPL, S_THETA,
    S_ATIME, S_XLI, S_XNI, S_XNDT, S_XLDOT, S_XNDDT, S_FT,
) = range(s4.N_PARAMS, s4.N_PARAMS + 33)  # fmt: skip
O_X = s4.N_PARAMS + 33  # output rows: x, y, z, vx, vy, vz, error code
N_ROWS = O_X + 7

KIND_NEAR, KIND_DEEP, KIND_SYNC, KIND_HALF_DAY, KIND_SCALAR = 0, 1, 2, 3, 4

XKE = s4.XKE
J2 = s4.J2
J3OJ2 = s4.J3OJ2
RE = s4.RADIUS_EARTH_KM
VKMPERSEC = s4.VKMPERSEC
TWOPI = s4.TWOPI
PI = s4.PI


def _row(name):
    return s4.PARAM_INDEX[name]


@kernel
def _stage_near_secular(w, jd, fr):
    """Near-earth: secular drag and gravity; fills the common rows for the long-period stage."""
    for i in range(BLOCK):
        t = (jd - w[s4.P_JD * BLOCK + i]) * 1440.0 + (fr - w[s4.P_JDF * BLOCK + i]) * 1440.0
        xmdf = w[s4.P_MO * BLOCK + i] + w[s4.P_MDOT * BLOCK + i] * t
        argpdf = w[s4.P_ARGPO * BLOCK + i] + w[s4.P_ARGPDOT * BLOCK + i] * t
        nodedf = w[s4.P_NODEO * BLOCK + i] + w[s4.P_NODEDOT * BLOCK + i] * t
        t2 = t * t
        nodem = nodedf + w[s4.P_NODECF * BLOCK + i] * t2
        bstar = w[s4.P_BSTAR * BLOCK + i]
        tempa = 1.0 - w[s4.P_CC1 * BLOCK + i] * t
        tempe = bstar * w[s4.P_CC4 * BLOCK + i] * t
        templ = w[s4.P_T2COF * BLOCK + i] * t2

        # The full drag model, selected away for "simple" objects (isimp == 1).
        _, cos_xmdf = sincos(xmdf)
        delmtemp = 1.0 + w[s4.P_ETA * BLOCK + i] * cos_xmdf
        delm = w[s4.P_XMCOF * BLOCK + i] * (
            delmtemp * delmtemp * delmtemp - w[s4.P_DELMO * BLOCK + i]
        )
        temp = w[s4.P_OMGCOF * BLOCK + i] * t + delm
        mm_full = xmdf + temp
        t3 = t2 * t
        t4 = t3 * t
        sin_mm, _ = sincos(mm_full)
        simple = w[s4.P_ISIMP * BLOCK + i] == 1.0
        tempa_full = (
            tempa
            - w[s4.P_D2 * BLOCK + i] * t2
            - w[s4.P_D3 * BLOCK + i] * t3
            - w[s4.P_D4 * BLOCK + i] * t4
        )
        tempe_full = tempe + bstar * w[s4.P_CC5 * BLOCK + i] * (sin_mm - w[s4.P_SINMAO * BLOCK + i])
        templ_full = (
            templ
            + w[s4.P_T3COF * BLOCK + i] * t3
            + t4 * (w[s4.P_T4COF * BLOCK + i] + t * w[s4.P_T5COF * BLOCK + i])
        )
        mm = xmdf if simple else mm_full
        argpm = argpdf if simple else argpdf - temp
        tempa = tempa if simple else tempa_full
        tempe = tempe if simple else tempe_full
        templ = templ if simple else templ_full

        am = w[s4.P_AMFAC * BLOCK + i] * tempa * tempa
        nm = XKE / (am * math.sqrt(am))
        em = w[s4.P_ECCO * BLOCK + i] - tempe
        err = 1.0 if (em >= 1.0 or em < -0.001) else 0.0
        em = em if em >= 1.0e-6 else 1.0e-6
        mm = mm + w[s4.P_NO * BLOCK + i] * templ
        xlm = mm + argpm + nodem
        nodem = cfmod(nodem, TWOPI)
        argpm = cfmod(argpm, TWOPI)
        xlm = cfmod(xlm, TWOPI)
        mm = cfmod(xlm - argpm - nodem, TWOPI)

        sin_ap, cos_ap = sincos(argpm)
        axnl = em * cos_ap
        temp = 1.0 / (am * (1.0 - em * em))
        aynl = em * sin_ap + temp * w[s4.P_AYCOF * BLOCK + i]
        xl = mm + argpm + nodem + temp * w[s4.P_XLCOF * BLOCK + i] * axnl
        u = cfmod(xl - nodem, TWOPI)

        w[S_AXNL * BLOCK + i] = axnl
        w[S_AYNL * BLOCK + i] = aynl
        w[S_U * BLOCK + i] = u
        w[S_EO1 * BLOCK + i] = u
        w[S_AM * BLOCK + i] = am
        w[S_NM * BLOCK + i] = nm
        w[S_NODE * BLOCK + i] = nodem
        w[S_ERR * BLOCK + i] = err
        w[S_XINCP * BLOCK + i] = w[s4.P_INCLO * BLOCK + i]
        w[S_SINIP * BLOCK + i] = w[s4.P_SINIO * BLOCK + i]
        w[S_COSIP * BLOCK + i] = w[s4.P_COSIO * BLOCK + i]
        w[S_CON41 * BLOCK + i] = w[s4.P_CON41 * BLOCK + i]
        w[S_X1MTH2 * BLOCK + i] = w[s4.P_X1MTH2 * BLOCK + i]
        w[S_X7THM1 * BLOCK + i] = w[s4.P_X7THM1 * BLOCK + i]


@kernel
def _stage_deep_secular(w, jd, fr):
    """Deep space (always the simple drag model): secular terms and dspace's linear rates."""
    rptim = 4.37526908801129966e-3
    for i in range(BLOCK):
        t = (jd - w[s4.P_JD * BLOCK + i]) * 1440.0 + (fr - w[s4.P_JDF * BLOCK + i]) * 1440.0
        t2 = t * t
        w[S_T * BLOCK + i] = t
        w[S_MM * BLOCK + i] = (
            w[s4.P_MO * BLOCK + i] + w[s4.P_MDOT * BLOCK + i] * t + w[s4.P_DMDT * BLOCK + i] * t
        )
        w[S_ARGPM * BLOCK + i] = (
            w[s4.P_ARGPO * BLOCK + i]
            + w[s4.P_ARGPDOT * BLOCK + i] * t
            + w[s4.P_DOMDT * BLOCK + i] * t
        )
        w[S_NODE * BLOCK + i] = (
            w[s4.P_NODEO * BLOCK + i]
            + w[s4.P_NODEDOT * BLOCK + i] * t
            + w[s4.P_NODECF * BLOCK + i] * t2
            + w[s4.P_DNODT * BLOCK + i] * t
        )
        w[S_TEMPA * BLOCK + i] = 1.0 - w[s4.P_CC1 * BLOCK + i] * t
        w[S_TEMPE * BLOCK + i] = w[s4.P_BSTAR * BLOCK + i] * w[s4.P_CC4 * BLOCK + i] * t
        w[S_TEMPL * BLOCK + i] = w[s4.P_T2COF * BLOCK + i] * t2
        w[S_EM * BLOCK + i] = w[s4.P_ECCO * BLOCK + i] + w[s4.P_DEDT * BLOCK + i] * t
        w[S_INCLM * BLOCK + i] = w[s4.P_INCLO * BLOCK + i] + w[s4.P_DIDT * BLOCK + i] * t
        w[S_THETA * BLOCK + i] = cfmod(w[s4.P_GSTO * BLOCK + i] + t * rptim, TWOPI)
        w[S_NM * BLOCK + i] = w[s4.P_NO * BLOCK + i]
        # Restart the resonance integration from epoch when the reference would.
        atime = w[S_ATIME * BLOCK + i]
        restart = atime == 0.0 or t * atime <= 0.0 or math.fabs(t) < math.fabs(atime)
        w[S_ATIME * BLOCK + i] = 0.0 if restart else atime
        w[S_XNI * BLOCK + i] = w[s4.P_NO * BLOCK + i] if restart else w[S_XNI * BLOCK + i]
        w[S_XLI * BLOCK + i] = w[s4.P_XLAMO * BLOCK + i] if restart else w[S_XLI * BLOCK + i]


@inline_kernel
def _rates_half_day(w, i, xli, xni, atime):
    """12 h resonance: d(n)/dt, d(lambda)/dt and d2(n)/dt2 at the integrator state."""
    g22 = 5.7686396
    g32 = 0.95240898
    g44 = 1.8014998
    g52 = 1.0508330
    g54 = 4.4108898
    xomi = w[s4.P_ARGPO * BLOCK + i] + w[s4.P_ARGPDOT * BLOCK + i] * atime
    x2omi = xomi + xomi
    x2li = xli + xli
    s1, c1 = sincos(x2omi + xli - g22)
    s2, c2 = sincos(xli - g22)
    s3, c3 = sincos(xomi + xli - g32)
    s4_, c4 = sincos(-xomi + xli - g32)
    s5, c5 = sincos(x2omi + x2li - g44)
    s6, c6 = sincos(x2li - g44)
    s7, c7 = sincos(xomi + xli - g52)
    s8, c8 = sincos(-xomi + xli - g52)
    s9, c9 = sincos(xomi + x2li - g54)
    s10, c10 = sincos(-xomi + x2li - g54)
    d2201 = w[s4.P_D2201 * BLOCK + i]
    d2211 = w[s4.P_D2211 * BLOCK + i]
    d3210 = w[s4.P_D3210 * BLOCK + i]
    d3222 = w[s4.P_D3222 * BLOCK + i]
    d4410 = w[s4.P_D4410 * BLOCK + i]
    d4422 = w[s4.P_D4422 * BLOCK + i]
    d5220 = w[s4.P_D5220 * BLOCK + i]
    d5232 = w[s4.P_D5232 * BLOCK + i]
    d5421 = w[s4.P_D5421 * BLOCK + i]
    d5433 = w[s4.P_D5433 * BLOCK + i]
    xndt = (
        d2201 * s1 + d2211 * s2 + d3210 * s3 + d3222 * s4_ + d4410 * s5
        + d4422 * s6 + d5220 * s7 + d5232 * s8 + d5421 * s9 + d5433 * s10
    )  # fmt: skip
    xldot = xni + w[s4.P_XFACT * BLOCK + i]
    xnddt = (
        d2201 * c1 + d2211 * c2 + d3210 * c3 + d3222 * c4 + d5220 * c7 + d5232 * c8
        + 2.0 * (d4410 * c5 + d4422 * c6 + d5421 * c9 + d5433 * c10)
    )  # fmt: skip
    return xndt, xldot, xnddt * xldot


@inline_kernel
def _rates_synchronous(w, i, xli, xni):
    """24 h resonance: the same rates from the three synchronous terms."""
    fasx2 = 0.13130908
    fasx4 = 2.8843198
    fasx6 = 0.37448087
    del1 = w[s4.P_DEL1 * BLOCK + i]
    del2 = w[s4.P_DEL2 * BLOCK + i]
    del3 = w[s4.P_DEL3 * BLOCK + i]
    s1, c1 = sincos(xli - fasx2)
    s2, c2 = sincos(2.0 * (xli - fasx4))
    s3, c3 = sincos(3.0 * (xli - fasx6))
    xndt = del1 * s1 + del2 * s2 + del3 * s3
    xldot = xni + w[s4.P_XFACT * BLOCK + i]
    xnddt = (del1 * c1 + 2.0 * del2 * c2 + 3.0 * del3 * c3) * xldot
    return xndt, xldot, xnddt


@kernel
def _stage_resonance(w, half_day):
    """dspace's resonance integrator: 720-min steps from the last state, lane-masked."""
    stepp = 720.0
    step2 = 259200.0
    while True:
        stepping = 0.0
        for i in range(BLOCK):
            xli = w[S_XLI * BLOCK + i]
            xni = w[S_XNI * BLOCK + i]
            atime = w[S_ATIME * BLOCK + i]
            t = w[S_T * BLOCK + i]
            if half_day:
                xndt, xldot, xnddt = _rates_half_day(w, i, xli, xni, atime)
            else:
                xndt, xldot, xnddt = _rates_synchronous(w, i, xli, xni)
            step = math.fabs(t - atime) >= stepp
            delt = stepp if t > 0.0 else -stepp
            w[S_XLI * BLOCK + i] = xli + xldot * delt + xndt * step2 if step else xli
            w[S_XNI * BLOCK + i] = xni + xndt * delt + xnddt * step2 if step else xni
            w[S_ATIME * BLOCK + i] = atime + delt if step else atime
            w[S_XNDT * BLOCK + i] = xndt
            w[S_XLDOT * BLOCK + i] = xldot
            w[S_XNDDT * BLOCK + i] = xnddt
            w[S_FT * BLOCK + i] = t - atime
            stepping += 1.0 if step else 0.0
        if stepping == 0.0:
            break
    # The lanes' final derivatives were taken where no step remained: evaluate there.
    for i in range(BLOCK):
        ft = w[S_FT * BLOCK + i]
        xndt = w[S_XNDT * BLOCK + i]
        xnddt = w[S_XNDDT * BLOCK + i]
        no = w[s4.P_NO * BLOCK + i]
        nm = w[S_XNI * BLOCK + i] + xndt * ft + xnddt * ft * ft * 0.5
        xl = w[S_XLI * BLOCK + i] + w[S_XLDOT * BLOCK + i] * ft + xndt * ft * ft * 0.5
        nodem = w[S_NODE * BLOCK + i]
        theta = w[S_THETA * BLOCK + i]
        if half_day:
            w[S_MM * BLOCK + i] = xl - 2.0 * nodem + 2.0 * theta
        else:
            w[S_MM * BLOCK + i] = xl - nodem - w[S_ARGPM * BLOCK + i] + theta
        w[S_NM * BLOCK + i] = no + (nm - no)


@inline_kernel
def _third_body_terms(w, i, zm, ecc, e2, e3, i2, i3, l2, l3, l4, gh2, gh3, gh4, h2, h3):
    """dpper's periodics from one third body (Sun or Moon): the rows name its coefficients."""
    sinzm, _ = sincos(zm)
    sinzf, coszf = sincos(zm + 2.0 * ecc * sinzm)
    f2 = 0.5 * sinzf * sinzf - 0.25
    f3 = -0.5 * sinzf * coszf
    return (
        w[e2 * BLOCK + i] * f2 + w[e3 * BLOCK + i] * f3,
        w[i2 * BLOCK + i] * f2 + w[i3 * BLOCK + i] * f3,
        w[l2 * BLOCK + i] * f2 + w[l3 * BLOCK + i] * f3 + w[l4 * BLOCK + i] * sinzf,
        w[gh2 * BLOCK + i] * f2 + w[gh3 * BLOCK + i] * f3 + w[gh4 * BLOCK + i] * sinzf,
        w[h2 * BLOCK + i] * f2 + w[h3 * BLOCK + i] * f3,
    )


@kernel
def _stage_deep_periodics(w):
    """Mean elements to osculating-ready: dpper's lunar-solar periodics, long-period terms."""
    zns = 1.19459e-5
    zes = 0.01675
    znl = 1.5835218e-4
    zel = 0.05490
    for i in range(BLOCK):
        t = w[S_T * BLOCK + i]
        no = w[s4.P_NO * BLOCK + i]
        nm = w[S_NM * BLOCK + i]
        tempa = w[S_TEMPA * BLOCK + i]
        err = 2.0 if nm <= 0.0 else 0.0
        # (xke/nm)^(2/3) = am_factor * (no/nm)^(2/3); Newton cube root of (no/nm)^2.
        q = no / nm
        q2 = q * q
        y = 1.0 + (2.0 / 3.0) * (q - 1.0)
        for _ in range(5):
            y = y - (y * y * y - q2) / (3.0 * y * y)
        am = w[s4.P_AMFAC * BLOCK + i] * y * tempa * tempa
        nm = XKE / (am * math.sqrt(am))
        em = w[S_EM * BLOCK + i] - w[S_TEMPE * BLOCK + i]
        if err == 0.0 and (em >= 1.0 or em < -0.001):
            err = 1.0
        em = em if em >= 1.0e-6 else 1.0e-6
        mm = w[S_MM * BLOCK + i] + no * w[S_TEMPL * BLOCK + i]
        argpm = w[S_ARGPM * BLOCK + i]
        nodem = w[S_NODE * BLOCK + i]
        xlm = mm + argpm + nodem
        nodem = cfmod(nodem, TWOPI)
        argpm = cfmod(argpm, TWOPI)
        xlm = cfmod(xlm, TWOPI)
        mm = cfmod(xlm - argpm - nodem, TWOPI)

        # dpper: lunar-solar periodics.
        ses, sis, sls, sghs, shs = _third_body_terms(
            w, i, w[s4.P_ZMOS * BLOCK + i] + zns * t, zes,
            s4.P_SE2, s4.P_SE3, s4.P_SI2, s4.P_SI3, s4.P_SL2, s4.P_SL3, s4.P_SL4,
            s4.P_SGH2, s4.P_SGH3, s4.P_SGH4, s4.P_SH2, s4.P_SH3,
        )  # fmt: skip
        sel, sil, sll, sghl, shll = _third_body_terms(
            w, i, w[s4.P_ZMOL * BLOCK + i] + znl * t, zel,
            s4.P_EE2, s4.P_E3, s4.P_XI2, s4.P_XI3, s4.P_XL2, s4.P_XL3, s4.P_XL4,
            s4.P_XGH2, s4.P_XGH3, s4.P_XGH4, s4.P_XH2, s4.P_XH3,
        )  # fmt: skip
        pe = ses + sel - w[s4.P_PEO * BLOCK + i]
        pinc = sis + sil - w[s4.P_PINCO * BLOCK + i]
        pl = sls + sll - w[s4.P_PLO * BLOCK + i]
        pgh = sghs + sghl - w[s4.P_PGHO * BLOCK + i]
        ph = shs + shll - w[s4.P_PHO * BLOCK + i]
        inclp = w[S_INCLM * BLOCK + i] + pinc
        ep = em + pe
        sinip, cosip = sincos(inclp)
        # inclination >= 0.2 rad: direct; below: Lyddane's modification. Both, then select.
        ph_d = ph / sinip
        argp_d = argpm + (pgh - cosip * ph_d)
        node_d = nodem + ph_d
        sinop, cosop = sincos(nodem)
        alfdp = sinip * sinop + (ph * cosop + pinc * cosip * sinop)
        betdp = sinip * cosop + (-ph * sinop + pinc * cosip * cosop)
        xls = mm + argpm + pl + pgh + (cosip - pinc * sinip) * nodem
        node_l = atan2(alfdp, betdp)
        gap = math.fabs(nodem - node_l) > PI
        node_l = (node_l + TWOPI if node_l < nodem else node_l - TWOPI) if gap else node_l
        mp = mm + pl
        argp_l = xls - mp - cosip * node_l
        direct = inclp >= 0.2
        nodep = node_d if direct else node_l
        argpp = argp_d if direct else argp_l
        xincp = inclp
        flip = xincp < 0.0
        xincp = -xincp if flip else xincp
        nodep = nodep + PI if flip else nodep
        argpp = argpp - PI if flip else argpp
        if err == 0.0 and (ep < 0.0 or ep > 1.0):
            err = 3.0

        sinip, cosip = sincos(xincp)
        aycof = -0.5 * J3OJ2 * sinip
        den = 1.0 + cosip if math.fabs(cosip + 1.0) > 1.5e-12 else 1.5e-12
        xlcof = -0.25 * J3OJ2 * sinip * (3.0 + 5.0 * cosip) / den
        sin_ap, cos_ap = sincos(argpp)
        axnl = ep * cos_ap
        temp = 1.0 / (am * (1.0 - ep * ep))
        aynl = ep * sin_ap + temp * aycof
        xl = mp + argpp + nodep + temp * xlcof * axnl
        u = cfmod(xl - nodep, TWOPI)
        cosisq = cosip * cosip

        w[S_AXNL * BLOCK + i] = axnl
        w[S_AYNL * BLOCK + i] = aynl
        w[S_U * BLOCK + i] = u
        w[S_EO1 * BLOCK + i] = u
        w[S_AM * BLOCK + i] = am
        w[S_NM * BLOCK + i] = nm
        w[S_NODE * BLOCK + i] = nodep
        w[S_ERR * BLOCK + i] = err
        w[S_XINCP * BLOCK + i] = xincp
        w[S_SINIP * BLOCK + i] = sinip
        w[S_COSIP * BLOCK + i] = cosip
        w[S_CON41 * BLOCK + i] = 3.0 * cosisq - 1.0
        w[S_X1MTH2 * BLOCK + i] = 1.0 - cosisq
        w[S_X7THM1 * BLOCK + i] = 7.0 * cosisq - 1.0


@kernel
def _stage_kepler(w):
    """The reference's Newton iteration, lane by lane, with an activity mask."""
    for i in range(BLOCK):
        w[S_ACT * BLOCK + i] = 1.0
    for _ in range(10):
        for i in range(BLOCK):
            active = w[S_ACT * BLOCK + i] != 0.0
            eo1 = w[S_EO1 * BLOCK + i]
            axnl = w[S_AXNL * BLOCK + i]
            aynl = w[S_AYNL * BLOCK + i]
            sineo1, coseo1 = sincos(eo1)
            tem5 = 1.0 - coseo1 * axnl - sineo1 * aynl
            tem5 = (w[S_U * BLOCK + i] - aynl * coseo1 + axnl * sineo1 - eo1) / tem5
            tem5 = 0.95 if tem5 >= 0.95 else (-0.95 if tem5 <= -0.95 else tem5)
            w[S_SIN * BLOCK + i] = sineo1 if active else w[S_SIN * BLOCK + i]
            w[S_COS * BLOCK + i] = coseo1 if active else w[S_COS * BLOCK + i]
            w[S_EO1 * BLOCK + i] = eo1 + tem5 if active else eo1
            w[S_ACT * BLOCK + i] = 1.0 if (active and math.fabs(tem5) >= 1.0e-12) else 0.0
        still = 0.0
        for i in range(BLOCK):
            still += w[S_ACT * BLOCK + i]
        if still == 0.0:
            break


@kernel
def _stage_short_period(w):
    """Short-period periodics and the TEME state, with the error code."""
    for i in range(BLOCK):
        axnl = w[S_AXNL * BLOCK + i]
        aynl = w[S_AYNL * BLOCK + i]
        am = w[S_AM * BLOCK + i]
        nm = w[S_NM * BLOCK + i]
        sineo1 = w[S_SIN * BLOCK + i]
        coseo1 = w[S_COS * BLOCK + i]
        ecose = axnl * coseo1 + aynl * sineo1
        esine = axnl * sineo1 - aynl * coseo1
        el2 = axnl * axnl + aynl * aynl
        pl = am * (1.0 - el2)
        rl = am * (1.0 - ecose)
        rdotl = math.sqrt(am) * esine / rl
        rvdotl = math.sqrt(pl) / rl
        betal = math.sqrt(1.0 - el2)
        temp = esine / (1.0 + betal)
        sinu = am / rl * (sineo1 - aynl - axnl * temp)
        cosu = am / rl * (coseo1 - axnl + aynl * temp)
        sin2u = (cosu + cosu) * sinu
        cos2u = 1.0 - 2.0 * sinu * sinu
        temp = 1.0 / pl
        temp1 = 0.5 * J2 * temp
        temp2 = temp1 * temp
        con41 = w[S_CON41 * BLOCK + i]
        x1mth2 = w[S_X1MTH2 * BLOCK + i]
        cosip = w[S_COSIP * BLOCK + i]
        sinip = w[S_SINIP * BLOCK + i]

        mrt = rl * (1.0 - 1.5 * temp2 * betal * con41) + 0.5 * temp1 * x1mth2 * cos2u
        # su = atan2(sinu, cosu) - dsu, applied as a rotation of (sin, cos).
        dsu = 0.25 * temp2 * w[S_X7THM1 * BLOCK + i] * sin2u
        h = math.sqrt(sinu * sinu + cosu * cosu)
        sin_d, cos_d = sincos(dsu)
        sinsu = (sinu * cos_d - cosu * sin_d) / h
        cossu = (cosu * cos_d + sinu * sin_d) / h
        xnode = w[S_NODE * BLOCK + i] + 1.5 * temp2 * cosip * sin2u
        xinc = w[S_XINCP * BLOCK + i] + 1.5 * temp2 * cosip * sinip * cos2u
        mvt = rdotl - nm * temp1 * x1mth2 * sin2u / XKE
        rvdot = rvdotl + nm * temp1 * (x1mth2 * cos2u + 1.5 * con41) / XKE

        snod, cnod = sincos(xnode)
        sini, cosi = sincos(xinc)
        state = s4.teme_state(snod, cnod, sini, cosi, sinsu, cossu, mrt, mvt, rvdot)
        for k in range(6):
            w[(O_X + k) * BLOCK + i] = state[k]
        code = w[S_ERR * BLOCK + i]
        if code == 0.0:
            code = 4.0 if pl < 0.0 else (6.0 if mrt < 1.0 else 0.0)
        w[(O_X + 6) * BLOCK + i] = code


@kernel
def _run_block(pt, lo, n, kind, order, jd, fr, e, r, v):
    # Lanes past n repeat the block's first object and are not written out.
    w = np.zeros(N_ROWS * BLOCK)
    for k in range(s4.N_PARAMS):
        for i in range(BLOCK):
            w[k * BLOCK + i] = pt[k, lo + (i if i < n else 0)]
    nan = math.nan
    for j in range(jd.shape[0]):
        if kind == KIND_NEAR:
            _stage_near_secular(w, jd[j], fr[j])
        else:
            _stage_deep_secular(w, jd[j], fr[j])
            if kind == KIND_SYNC or kind == KIND_HALF_DAY:
                _stage_resonance(w, kind == KIND_HALF_DAY)
            _stage_deep_periodics(w)
        _stage_kepler(w)
        _stage_short_period(w)
        for i in range(n):
            o = order[lo + i]
            code = int(w[(O_X + 6) * BLOCK + i])
            e[o, j] = code
            bad = code != 0 and code != 6
            for k in range(3):
                r[o, j, k] = nan if bad else w[(O_X + k) * BLOCK + i]
                v[o, j, k] = nan if bad else w[(O_X + 3 + k) * BLOCK + i]


@parallel_kernel
def _propagate_blocks(pt, params, order, block_lo, block_n, block_kind, jd, fr, e, r, v):
    for b in numba.prange(block_lo.shape[0]):
        lo = block_lo[b]
        n = block_n[b]
        kind = block_kind[b]
        if kind == KIND_SCALAR:
            for k in range(lo, lo + n):
                s4.propagate_row(params, order[k], jd, fr, e, r, v)
        else:
            _run_block(pt, lo, n, kind, order, jd, fr, e, r, v)


class BlockPlan:
    """How a catalogue's objects are grouped into SIMD blocks (built once per catalogue)."""

    def __init__(self, params: np.ndarray, block: int = BLOCK):
        if block != BLOCK:
            raise ValueError(f"block size is fixed at {BLOCK} (a compile-time constant)")
        deep = params[:, s4.P_DEEP] != 0.0
        irez = params[:, s4.P_IREZ]
        init_err = params[:, s4.P_INITERR]
        failed = (init_err != 0.0) & (init_err != 6.0)
        kind = np.where(deep, KIND_DEEP, KIND_NEAR)
        kind = np.where(deep & (irez == 1.0), KIND_SYNC, kind)
        kind = np.where(deep & (irez == 2.0), KIND_HALF_DAY, kind)
        kind = np.where(failed, KIND_SCALAR, kind)
        self.order = np.argsort(kind, kind="stable").astype(np.int64)
        self.pt = np.ascontiguousarray(params[self.order].T)
        sorted_kind = kind[self.order]
        starts, sizes, kinds = [], [], []
        for k in np.unique(sorted_kind):
            first, last = np.searchsorted(sorted_kind, [k, k + 1])
            for lo in range(first, last, BLOCK):
                starts.append(lo)
                sizes.append(min(BLOCK, last - lo))
                kinds.append(k)
        # Shuffle the blocks so that a static split of the prange mixes kinds.
        perm = np.random.default_rng(0).permutation(len(starts))
        self.block_lo = np.asarray(starts, dtype=np.int64)[perm]
        self.block_n = np.asarray(sizes, dtype=np.int64)[perm]
        self.block_kind = np.asarray(kinds, dtype=np.int64)[perm]

    def propagate(self, params, jd, fr, e, r, v):
        _propagate_blocks(
            self.pt, params, self.order, self.block_lo, self.block_n, self.block_kind,
            jd, fr, e, r, v,
        )  # fmt: skip
