"""Identification of tracklets against a catalogue: pure science, no service.

Stages, one module each: :mod:`~aposos.correlate.gate` (coarse gate on the ephemeris
cube), :mod:`~aposos.correlate.fit` (exact SGP4 fine fit), :mod:`~aposos.correlate.model`
(the error model, fitted on real catalogue history by :mod:`~aposos.correlate.calibrate`),
:mod:`~aposos.correlate.decide` (posterior and decision), composed by
:class:`~aposos.correlate.correlator.SGP4Correlator`.
"""

__all__ = ["ErrorModel", "SGP4Correlator"]


def __getattr__(name):
    # lazy: importing the package compiles nothing
    if name == "SGP4Correlator":
        from aposos.correlate.correlator import SGP4Correlator

        return SGP4Correlator
    if name == "ErrorModel":
        from aposos.correlate.model import ErrorModel

        return ErrorModel
    raise AttributeError(name)
