"""The suite runs on the packaged star catalogues, whatever the machine's setup built.

`make` builds the deep Tycho-2 store into the user's data folder when it can, and the
solver's default catalogue (`auto`) would then read it: tests would depend on the
machine. This plugin points ``$APOSOS_STAR_STORE`` at a folder that does not exist for
the whole run (subprocesses too); the tests of the deep store build and set their own
(``tests/test_stars_deep.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

from aposos.station.stars_store import STORE_ENV

NO_STORE = Path(__file__).resolve().parent / ".no-star-store"


def pytest_configure(config):
    os.environ[STORE_ENV] = str(NO_STORE)
