"""SGP4 / SDP4 propagation as numba kernels over objects x times.

The element sets are initialised by python-sgp4's ``sgp4init`` (its pure-Python
``Satrec`` exposes every derived constant); :func:`pack_satrecs` copies those
constants into one float64 array, a row per object. The propagation below is ours:
Vallado's 2006-2020 revision of SGP4 (near-earth) and SDP4 (deep space, with the
lunar-solar periodics and the 12 h / 24 h resonance integrator), WGS72 constants,
"improved" operation mode, as python-sgp4's ``SatrecArray`` runs it.

Error codes (``e``), as python-sgp4:

====  ==========================================================
0     no error
1     mean eccentricity is outside the range 0 <= e < 1
2     mean motion has fallen below zero
3     perturbed eccentricity is outside the range 0 <= e <= 1
4     length of the orbit's semi-latus rectum has fallen below zero
5     epoch elements are sub-orbital (from ``sgp4init``)
6     orbit has decayed: the computed position is underground
7     (ours) the time is not finite or more than 200 years from the epoch
====  ==========================================================

Positions and velocities are NaN where the code is 1-5 or 7 (as python-sgp4 for 1-5);
with code 6 the computed (underground) state is returned. Code 7 is this kernel's guard:
the resonance integrator steps 720 minutes at a time from the epoch, so an absurd time
(a datetime64 cast to a number, an infinity) would otherwise keep it stepping for hours;
:mod:`aposos.orbit.propagation` sends any call with such a time here, not to the SIMD
kernel.

This module is the reference (scalar) kernel, readable beside Vallado's code;
:mod:`aposos.orbit.sgp4_vector` is the same arithmetic in SIMD blocks, and
:mod:`aposos.orbit.propagation` chooses between them.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from aposos.orbit.jit import inline_kernel, kernel, parallel_kernel

ERROR_MESSAGES = {
    0: "no error",
    1: "mean eccentricity is outside the range 0 <= e < 1",
    2: "mean motion has fallen below zero",
    3: "perturbed eccentricity is outside the range 0 <= e <= 1",
    4: "length of the orbit's semi-latus rectum has fallen below zero",
    5: "epoch elements are sub-orbital",
    6: "satellite has decayed",
    7: "time is not finite or more than 200 years from the epoch",
}
CODE_TIME_OUT_OF_RANGE = 7
MAX_MINUTES_FROM_EPOCH = 200.0 * 365.25 * 1440.0  # |t| bound: at most 146,100 resonance steps

# WGS72 constants (as python-sgp4's default ``WGS72``).
MU_KM3S2 = 398600.8
RADIUS_EARTH_KM = 6378.135
XKE = 60.0 / math.sqrt(RADIUS_EARTH_KM**3 / MU_KM3S2)
J2 = 0.001082616
J3 = -0.00000253881
J3OJ2 = J3 / J2
VKMPERSEC = RADIUS_EARTH_KM * XKE / 60.0
TWOPI = 2.0 * math.pi
PI = math.pi

# Columns of the packed element array: one row per object.
PARAM_NAMES = (
    "method_deep", "isimp", "irez", "init_error",
    "jdsatepoch", "jdsatepochF",
    "mo", "mdot", "argpo", "argpdot", "nodeo", "nodedot", "nodecf",
    "cc1", "cc4", "cc5", "bstar", "t2cof", "t3cof", "t4cof", "t5cof",
    "omgcof", "eta", "xmcof", "delmo", "d2", "d3", "d4", "sinmao",
    "no_unkozai", "ecco", "inclo",
    "aycof", "xlcof", "con41", "x1mth2", "x7thm1",
    # deep space: dpper
    "e3", "ee2", "peo", "pgho", "pho", "pinco", "plo",
    "se2", "se3", "sgh2", "sgh3", "sgh4", "sh2", "sh3", "si2", "si3",
    "sl2", "sl3", "sl4", "xgh2", "xgh3", "xgh4", "xh2", "xh3",
    "xi2", "xi3", "xl2", "xl3", "xl4", "zmol", "zmos",
    # deep space: dspace
    "d2201", "d2211", "d3210", "d3222", "d4410", "d4422",
    "d5220", "d5232", "d5421", "d5433",
    "dedt", "del1", "del2", "del3", "didt", "dmdt", "dnodt", "domdt",
    "gsto", "xfact", "xlamo",
    # derived here, for the vectorised near-earth path
    "am_factor", "sinio", "cosio",
)  # fmt: skip
N_PARAMS = len(PARAM_NAMES)
PARAM_INDEX = {name: k for k, name in enumerate(PARAM_NAMES)}
_I = PARAM_INDEX

# Column indices as module constants: numba freezes them at compile time.
P_DEEP, P_ISIMP, P_IREZ, P_INITERR = _I["method_deep"], _I["isimp"], _I["irez"], _I["init_error"]
P_JD, P_JDF = _I["jdsatepoch"], _I["jdsatepochF"]
P_MO, P_MDOT, P_ARGPO, P_ARGPDOT = _I["mo"], _I["mdot"], _I["argpo"], _I["argpdot"]
P_NODEO, P_NODEDOT, P_NODECF = _I["nodeo"], _I["nodedot"], _I["nodecf"]
P_CC1, P_CC4, P_CC5, P_BSTAR = _I["cc1"], _I["cc4"], _I["cc5"], _I["bstar"]
P_T2COF, P_T3COF, P_T4COF, P_T5COF = _I["t2cof"], _I["t3cof"], _I["t4cof"], _I["t5cof"]
P_OMGCOF, P_ETA, P_XMCOF, P_DELMO = _I["omgcof"], _I["eta"], _I["xmcof"], _I["delmo"]
P_D2, P_D3, P_D4, P_SINMAO = _I["d2"], _I["d3"], _I["d4"], _I["sinmao"]
P_NO, P_ECCO, P_INCLO = _I["no_unkozai"], _I["ecco"], _I["inclo"]
P_AYCOF, P_XLCOF, P_CON41, P_X1MTH2, P_X7THM1 = (
    _I["aycof"], _I["xlcof"], _I["con41"], _I["x1mth2"], _I["x7thm1"]
)  # fmt: skip
P_E3, P_EE2, P_PEO, P_PGHO, P_PHO, P_PINCO, P_PLO = (
    _I["e3"], _I["ee2"], _I["peo"], _I["pgho"], _I["pho"], _I["pinco"], _I["plo"]
)  # fmt: skip
P_SE2, P_SE3, P_SGH2, P_SGH3, P_SGH4 = _I["se2"], _I["se3"], _I["sgh2"], _I["sgh3"], _I["sgh4"]
P_SH2, P_SH3, P_SI2, P_SI3 = _I["sh2"], _I["sh3"], _I["si2"], _I["si3"]
P_SL2, P_SL3, P_SL4 = _I["sl2"], _I["sl3"], _I["sl4"]
P_XGH2, P_XGH3, P_XGH4, P_XH2, P_XH3 = _I["xgh2"], _I["xgh3"], _I["xgh4"], _I["xh2"], _I["xh3"]
P_XI2, P_XI3, P_XL2, P_XL3, P_XL4 = _I["xi2"], _I["xi3"], _I["xl2"], _I["xl3"], _I["xl4"]
P_ZMOL, P_ZMOS = _I["zmol"], _I["zmos"]
P_D2201, P_D2211, P_D3210, P_D3222 = _I["d2201"], _I["d2211"], _I["d3210"], _I["d3222"]
P_D4410, P_D4422, P_D5220, P_D5232 = _I["d4410"], _I["d4422"], _I["d5220"], _I["d5232"]
P_D5421, P_D5433 = _I["d5421"], _I["d5433"]
P_DEDT, P_DEL1, P_DEL2, P_DEL3 = _I["dedt"], _I["del1"], _I["del2"], _I["del3"]
P_DIDT, P_DMDT, P_DNODT, P_DOMDT = _I["didt"], _I["dmdt"], _I["dnodt"], _I["domdt"]
P_GSTO, P_XFACT, P_XLAMO = _I["gsto"], _I["xfact"], _I["xlamo"]
P_AMFAC, P_SINIO, P_COSIO = _I["am_factor"], _I["sinio"], _I["cosio"]


def pack_satrecs(satrecs) -> np.ndarray:
    """Copy the constants of initialised pure-Python ``sgp4.model.Satrec`` objects.

    Returns a C-contiguous ``(n, N_PARAMS)`` float64 array, a row per object.
    """
    out = np.zeros((len(satrecs), N_PARAMS))
    for row, s in zip(out, satrecs, strict=True):
        for k, name in enumerate(PARAM_NAMES):
            if name == "method_deep":
                row[k] = 1.0 if s.method == "d" else 0.0
            elif name == "init_error":
                row[k] = float(s.error)
            elif name == "am_factor":
                # (xke / no)^(2/3), as the reference computes it at every call
                row[k] = math.pow(XKE / s.no_unkozai, 2.0 / 3.0) if s.no_unkozai > 0 else math.nan
            elif name == "sinio":
                row[k] = math.sin(s.inclo)
            elif name == "cosio":
                row[k] = math.cos(s.inclo)
            else:
                row[k] = float(getattr(s, name))
    return out


@kernel
def _cfmod(x, y):
    # C's fmod: the result takes the sign of x.
    return np.fmod(x, y)


@kernel
def _dpper(p, i, t, ep, inclp, nodep, argpp, mp):
    """Lunar-solar long-period periodics (Vallado's dpper, init = 'n', opsmode 'i')."""
    zns = 1.19459e-5
    zes = 0.01675
    znl = 1.5835218e-4
    zel = 0.05490

    zm = p[i, P_ZMOS] + zns * t
    zf = zm + 2.0 * zes * math.sin(zm)
    sinzf = math.sin(zf)
    f2 = 0.5 * sinzf * sinzf - 0.25
    f3 = -0.5 * sinzf * math.cos(zf)
    ses = p[i, P_SE2] * f2 + p[i, P_SE3] * f3
    sis = p[i, P_SI2] * f2 + p[i, P_SI3] * f3
    sls = p[i, P_SL2] * f2 + p[i, P_SL3] * f3 + p[i, P_SL4] * sinzf
    sghs = p[i, P_SGH2] * f2 + p[i, P_SGH3] * f3 + p[i, P_SGH4] * sinzf
    shs = p[i, P_SH2] * f2 + p[i, P_SH3] * f3

    zm = p[i, P_ZMOL] + znl * t
    zf = zm + 2.0 * zel * math.sin(zm)
    sinzf = math.sin(zf)
    f2 = 0.5 * sinzf * sinzf - 0.25
    f3 = -0.5 * sinzf * math.cos(zf)
    sel = p[i, P_EE2] * f2 + p[i, P_E3] * f3
    sil = p[i, P_XI2] * f2 + p[i, P_XI3] * f3
    sll = p[i, P_XL2] * f2 + p[i, P_XL3] * f3 + p[i, P_XL4] * sinzf
    sghl = p[i, P_XGH2] * f2 + p[i, P_XGH3] * f3 + p[i, P_XGH4] * sinzf
    shll = p[i, P_XH2] * f2 + p[i, P_XH3] * f3

    pe = ses + sel - p[i, P_PEO]
    pinc = sis + sil - p[i, P_PINCO]
    pl = sls + sll - p[i, P_PLO]
    pgh = sghs + sghl - p[i, P_PGHO]
    ph = shs + shll - p[i, P_PHO]

    inclp = inclp + pinc
    ep = ep + pe
    sinip = math.sin(inclp)
    cosip = math.cos(inclp)
    if inclp >= 0.2:
        ph = ph / sinip
        pgh = pgh - cosip * ph
        argpp = argpp + pgh
        nodep = nodep + ph
        mp = mp + pl
    else:
        # Lyddane modification for low inclination.
        sinop = math.sin(nodep)
        cosop = math.cos(nodep)
        alfdp = sinip * sinop + (ph * cosop + pinc * cosip * sinop)
        betdp = sinip * cosop + (-ph * sinop + pinc * cosip * cosop)
        nodep = _cfmod(nodep, TWOPI)
        xls = mp + argpp + pl + pgh + (cosip - pinc * sinip) * nodep
        xnoh = nodep
        nodep = math.atan2(alfdp, betdp)
        if math.fabs(xnoh - nodep) > PI:
            if nodep < xnoh:
                nodep = nodep + TWOPI
            else:
                nodep = nodep - TWOPI
        mp = mp + pl
        argpp = xls - mp - cosip * nodep
    return ep, inclp, nodep, argpp, mp


@kernel
def _dspace(p, i, t, state, em, argpm, inclm, mm, nodem):
    """Deep-space secular effects and the resonance integrator (Vallado's dspace).

    ``state`` holds (atime, xli, xni) and is carried between calls, as the
    reference carries it in the satrec: the integration continues from its last
    step instead of restarting at epoch (same steps, same result).
    """
    fasx2 = 0.13130908
    fasx4 = 2.8843198
    fasx6 = 0.37448087
    g22 = 5.7686396
    g32 = 0.95240898
    g44 = 1.8014998
    g52 = 1.0508330
    g54 = 4.4108898
    rptim = 4.37526908801129966e-3
    stepp = 720.0
    stepn = -720.0
    step2 = 259200.0

    irez = int(p[i, P_IREZ])
    no = p[i, P_NO]
    dndt = 0.0
    theta = _cfmod(p[i, P_GSTO] + t * rptim, TWOPI)
    em = em + p[i, P_DEDT] * t
    inclm = inclm + p[i, P_DIDT] * t
    argpm = argpm + p[i, P_DOMDT] * t
    nodem = nodem + p[i, P_DNODT] * t
    mm = mm + p[i, P_DMDT] * t
    nm = no

    if irez != 0:
        atime = state[0]
        xli = state[1]
        xni = state[2]
        if atime == 0.0 or t * atime <= 0.0 or math.fabs(t) < math.fabs(atime):
            atime = 0.0
            xni = no
            xli = p[i, P_XLAMO]
        delt = stepp if t > 0.0 else stepn
        xfact = p[i, P_XFACT]
        ft = 0.0
        xndt = 0.0
        xldot = 0.0
        xnddt = 0.0
        while True:
            if irez != 2:
                xndt = (
                    p[i, P_DEL1] * math.sin(xli - fasx2)
                    + p[i, P_DEL2] * math.sin(2.0 * (xli - fasx4))
                    + p[i, P_DEL3] * math.sin(3.0 * (xli - fasx6))
                )
                xldot = xni + xfact
                xnddt = (
                    p[i, P_DEL1] * math.cos(xli - fasx2)
                    + 2.0 * p[i, P_DEL2] * math.cos(2.0 * (xli - fasx4))
                    + 3.0 * p[i, P_DEL3] * math.cos(3.0 * (xli - fasx6))
                )
                xnddt = xnddt * xldot
            else:
                xomi = p[i, P_ARGPO] + p[i, P_ARGPDOT] * atime
                x2omi = xomi + xomi
                x2li = xli + xli
                xndt = (
                    p[i, P_D2201] * math.sin(x2omi + xli - g22)
                    + p[i, P_D2211] * math.sin(xli - g22)
                    + p[i, P_D3210] * math.sin(xomi + xli - g32)
                    + p[i, P_D3222] * math.sin(-xomi + xli - g32)
                    + p[i, P_D4410] * math.sin(x2omi + x2li - g44)
                    + p[i, P_D4422] * math.sin(x2li - g44)
                    + p[i, P_D5220] * math.sin(xomi + xli - g52)
                    + p[i, P_D5232] * math.sin(-xomi + xli - g52)
                    + p[i, P_D5421] * math.sin(xomi + x2li - g54)
                    + p[i, P_D5433] * math.sin(-xomi + x2li - g54)
                )
                xldot = xni + xfact
                xnddt = (
                    p[i, P_D2201] * math.cos(x2omi + xli - g22)
                    + p[i, P_D2211] * math.cos(xli - g22)
                    + p[i, P_D3210] * math.cos(xomi + xli - g32)
                    + p[i, P_D3222] * math.cos(-xomi + xli - g32)
                    + p[i, P_D5220] * math.cos(xomi + xli - g52)
                    + p[i, P_D5232] * math.cos(-xomi + xli - g52)
                    + 2.0
                    * (
                        p[i, P_D4410] * math.cos(x2omi + x2li - g44)
                        + p[i, P_D4422] * math.cos(x2li - g44)
                        + p[i, P_D5421] * math.cos(xomi + x2li - g54)
                        + p[i, P_D5433] * math.cos(-xomi + x2li - g54)
                    )
                )
                xnddt = xnddt * xldot
            if math.fabs(t - atime) >= stepp:
                xli = xli + xldot * delt + xndt * step2
                xni = xni + xndt * delt + xnddt * step2
                atime = atime + delt
            else:
                ft = t - atime
                break
        state[0] = atime
        state[1] = xli
        state[2] = xni
        nm = xni + xndt * ft + xnddt * ft * ft * 0.5
        xl = xli + xldot * ft + xndt * ft * ft * 0.5
        if irez != 1:
            mm = xl - 2.0 * nodem + 2.0 * theta
        else:
            mm = xl - nodem - argpm + theta
        dndt = nm - no
        nm = no + dndt
    return em, argpm, inclm, mm, nodem, nm


@kernel
def _sgp4_at(p, i, t, state, out_r, out_v):
    """Propagate object ``i`` to ``t`` minutes since its epoch; fill out_r/out_v, return code."""
    x2o3 = 2.0 / 3.0
    deep = p[i, P_DEEP] != 0.0

    xmdf = p[i, P_MO] + p[i, P_MDOT] * t
    argpdf = p[i, P_ARGPO] + p[i, P_ARGPDOT] * t
    nodedf = p[i, P_NODEO] + p[i, P_NODEDOT] * t
    argpm = argpdf
    mm = xmdf
    t2 = t * t
    nodem = nodedf + p[i, P_NODECF] * t2
    tempa = 1.0 - p[i, P_CC1] * t
    tempe = p[i, P_BSTAR] * p[i, P_CC4] * t
    templ = p[i, P_T2COF] * t2

    if p[i, P_ISIMP] != 1.0:
        delomg = p[i, P_OMGCOF] * t
        delmtemp = 1.0 + p[i, P_ETA] * math.cos(xmdf)
        delm = p[i, P_XMCOF] * (delmtemp * delmtemp * delmtemp - p[i, P_DELMO])
        temp = delomg + delm
        mm = xmdf + temp
        argpm = argpdf - temp
        t3 = t2 * t
        t4 = t3 * t
        tempa = tempa - p[i, P_D2] * t2 - p[i, P_D3] * t3 - p[i, P_D4] * t4
        tempe = tempe + p[i, P_BSTAR] * p[i, P_CC5] * (math.sin(mm) - p[i, P_SINMAO])
        templ = templ + p[i, P_T3COF] * t3 + t4 * (p[i, P_T4COF] + t * p[i, P_T5COF])

    nm = p[i, P_NO]
    em = p[i, P_ECCO]
    inclm = p[i, P_INCLO]
    if deep:
        em, argpm, inclm, mm, nodem, nm = _dspace(p, i, t, state, em, argpm, inclm, mm, nodem)

    if nm <= 0.0:
        return 2

    am = math.pow(XKE / nm, x2o3) * tempa * tempa
    nm = XKE / math.pow(am, 1.5)
    em = em - tempe
    if em >= 1.0 or em < -0.001:
        return 1
    if em < 1.0e-6:
        em = 1.0e-6
    mm = mm + p[i, P_NO] * templ
    xlm = mm + argpm + nodem
    nodem = _cfmod(nodem, TWOPI)
    argpm = _cfmod(argpm, TWOPI)
    xlm = _cfmod(xlm, TWOPI)
    mm = _cfmod(xlm - argpm - nodem, TWOPI)

    sinim = math.sin(inclm)
    cosim = math.cos(inclm)
    ep = em
    xincp = inclm
    argpp = argpm
    nodep = nodem
    mp = mm
    sinip = sinim
    cosip = cosim
    aycof = p[i, P_AYCOF]
    xlcof = p[i, P_XLCOF]
    con41 = p[i, P_CON41]
    x1mth2 = p[i, P_X1MTH2]
    x7thm1 = p[i, P_X7THM1]
    if deep:
        ep, xincp, nodep, argpp, mp = _dpper(p, i, t, ep, xincp, nodep, argpp, mp)
        if xincp < 0.0:
            xincp = -xincp
            nodep = nodep + PI
            argpp = argpp - PI
        if ep < 0.0 or ep > 1.0:
            return 3
        sinip = math.sin(xincp)
        cosip = math.cos(xincp)
        aycof = -0.5 * J3OJ2 * sinip
        if math.fabs(cosip + 1.0) > 1.5e-12:
            xlcof = -0.25 * J3OJ2 * sinip * (3.0 + 5.0 * cosip) / (1.0 + cosip)
        else:
            xlcof = -0.25 * J3OJ2 * sinip * (3.0 + 5.0 * cosip) / 1.5e-12

    # Long-period periodics.
    axnl = ep * math.cos(argpp)
    temp = 1.0 / (am * (1.0 - ep * ep))
    aynl = ep * math.sin(argpp) + temp * aycof
    xl = mp + argpp + nodep + temp * xlcof * axnl

    # Kepler's equation.
    u = _cfmod(xl - nodep, TWOPI)
    eo1 = u
    tem5 = 9999.9
    ktr = 1
    sineo1 = 0.0
    coseo1 = 0.0
    while math.fabs(tem5) >= 1.0e-12 and ktr <= 10:
        sineo1 = math.sin(eo1)
        coseo1 = math.cos(eo1)
        tem5 = 1.0 - coseo1 * axnl - sineo1 * aynl
        tem5 = (u - aynl * coseo1 + axnl * sineo1 - eo1) / tem5
        if math.fabs(tem5) >= 0.95:
            tem5 = 0.95 if tem5 > 0.0 else -0.95
        eo1 = eo1 + tem5
        ktr += 1

    # Short-period preliminary quantities.
    ecose = axnl * coseo1 + aynl * sineo1
    esine = axnl * sineo1 - aynl * coseo1
    el2 = axnl * axnl + aynl * aynl
    pl = am * (1.0 - el2)
    if pl < 0.0:
        return 4
    rl = am * (1.0 - ecose)
    rdotl = math.sqrt(am) * esine / rl
    rvdotl = math.sqrt(pl) / rl
    betal = math.sqrt(1.0 - el2)
    temp = esine / (1.0 + betal)
    sinu = am / rl * (sineo1 - aynl - axnl * temp)
    cosu = am / rl * (coseo1 - axnl + aynl * temp)
    su = math.atan2(sinu, cosu)
    sin2u = (cosu + cosu) * sinu
    cos2u = 1.0 - 2.0 * sinu * sinu
    temp = 1.0 / pl
    temp1 = 0.5 * J2 * temp
    temp2 = temp1 * temp

    if deep:
        cosisq = cosip * cosip
        con41 = 3.0 * cosisq - 1.0
        x1mth2 = 1.0 - cosisq
        x7thm1 = 7.0 * cosisq - 1.0

    # Short-period periodics.
    mrt = rl * (1.0 - 1.5 * temp2 * betal * con41) + 0.5 * temp1 * x1mth2 * cos2u
    su = su - 0.25 * temp2 * x7thm1 * sin2u
    xnode = nodep + 1.5 * temp2 * cosip * sin2u
    xinc = xincp + 1.5 * temp2 * cosip * sinip * cos2u
    mvt = rdotl - nm * temp1 * x1mth2 * sin2u / XKE
    rvdot = rvdotl + nm * temp1 * (x1mth2 * cos2u + 1.5 * con41) / XKE

    sinsu = math.sin(su)
    cossu = math.cos(su)
    snod = math.sin(xnode)
    cnod = math.cos(xnode)
    sini = math.sin(xinc)
    cosi = math.cos(xinc)
    x, y, z, vx, vy, vz = teme_state(snod, cnod, sini, cosi, sinsu, cossu, mrt, mvt, rvdot)
    out_r[0] = x
    out_r[1] = y
    out_r[2] = z
    out_v[0] = vx
    out_v[1] = vy
    out_v[2] = vz
    if mrt < 1.0:
        return 6
    return 0


@inline_kernel
def teme_state(snod, cnod, sini, cosi, sinsu, cossu, mrt, mvt, rvdot):
    """Position (km) and velocity (km/s) in TEME from the osculating orientation."""
    xmx = -snod * cosi
    xmy = cnod * cosi
    ux = xmx * sinsu + cnod * cossu
    uy = xmy * sinsu + snod * cossu
    uz = sini * sinsu
    vx = xmx * cossu - cnod * sinsu
    vy = xmy * cossu - snod * sinsu
    vz = sini * cossu
    mr = mrt * RADIUS_EARTH_KM
    return (
        mr * ux,
        mr * uy,
        mr * uz,
        (mvt * ux + rvdot * vx) * VKMPERSEC,
        (mvt * uy + rvdot * vy) * VKMPERSEC,
        (mvt * uz + rvdot * vz) * VKMPERSEC,
    )


@kernel
def propagate_row(p, i, jd, fr, e, r, v):
    """All times for object ``i``; carries the resonance state from one time to the next."""
    propagate_row_to(p, i, jd, fr, e, r, v, i)


@kernel
def propagate_row_to(p, i, jd, fr, e, r, v, out):
    """:func:`propagate_row` for object ``i`` into row ``out`` of ``e, r, v``."""
    state = np.zeros(3)
    nan = math.nan
    init_error = int(p[i, P_INITERR])
    for j in range(jd.shape[0]):
        t = (jd[j] - p[i, P_JD]) * 1440.0 + (fr[j] - p[i, P_JDF]) * 1440.0
        if init_error != 0 and init_error != 6:
            code = init_error
        elif not math.fabs(t) <= MAX_MINUTES_FROM_EPOCH:  # also NaN
            code = CODE_TIME_OUT_OF_RANGE
        else:
            code = _sgp4_at(p, i, t, state, r[out, j], v[out, j])
        e[out, j] = code
        if code != 0 and code != 6:
            for k in range(3):
                r[out, j, k] = nan
                v[out, j, k] = nan


@parallel_kernel
def _propagate_kernel(p, jd, fr, e, r, v):
    for i in numba.prange(p.shape[0]):
        propagate_row(p, i, jd, fr, e, r, v)


@parallel_kernel
def _propagate_per_object_kernel(p, jd, fr, e, r, v):
    # jd, fr of shape (n_obj, n_times): each object at its own times.
    for i in numba.prange(p.shape[0]):
        propagate_row(p, i, jd[i], fr[i], e, r, v)


@parallel_kernel
def _propagate_indexed_kernel(p, rows, jd, fr, e, r, v):
    # item k: object rows[k] at its own times jd[k], fr[k]
    for k in numba.prange(rows.shape[0]):
        propagate_row_to(p, rows[k], jd[k], fr[k], e, r, v, k)


def propagate_reference_rows(params, rows, jd, fr, e, r, v) -> None:
    """The scalar kernel for object ``rows[k]`` of ``params`` at times ``jd[k], fr[k]``
    (``(n, n_times)``), into row ``k`` of ``e, r, v``: objects that recur need no
    copies of their packed rows."""
    _propagate_indexed_kernel(params, rows, jd, fr, e, r, v)


def propagate_reference(params, jd, fr, e, r, v) -> None:
    """The scalar kernel over all objects: fills ``e, r, v`` in place.

    ``jd, fr`` are 1-D (the same times for every object) or ``(n_obj, n_times)``; arrays
    as :func:`aposos.orbit.propagation.propagate_packed` prepares them.
    """
    if jd.ndim == 1:
        _propagate_kernel(params, jd, fr, e, r, v)
    else:
        _propagate_per_object_kernel(params, jd, fr, e, r, v)
