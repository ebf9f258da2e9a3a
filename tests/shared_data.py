"""Where the real data used by the tests lives (a verbatim copy of ../shared/data)."""

from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parent / "data" / "shared"
CATALOGUE_OLD = SHARED_DATA / "catalogues" / "celestrak-active-2020-09-30.3le"
CATALOGUE_NEW = SHARED_DATA / "catalogues" / "celestrak-active-2020-10-02.3le"
