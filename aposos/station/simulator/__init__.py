"""The sky and camera simulator: FITS frames as a station's camera writes them, with
their truth. Its own room: nothing in the reduction imports it.

Modules: :mod:`.night` (the simulator and a night of frames), :mod:`.plan` (what is
observed when), :mod:`.sky` (stars, sky background, projection), :mod:`.satellites`,
:mod:`.render` (PSF and drawing), :mod:`.camera` (detector effects), :mod:`.fits`.
"""

from aposos.station.simulator.night import FrameSpec, SkySimulator, write_night

__all__ = ["FrameSpec", "SkySimulator", "write_night"]
