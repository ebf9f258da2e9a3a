PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PACKAGES := $(VENV)/.packages
STAMP := $(VENV)/.installed

.PHONY: test warm demo bench lint clean stars stars-setup

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or make PYTHON=python3)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# pip installs without byte-compiling (on one core, about 20 CPU-s of its 30); the
# next step compiles the packages beside the star store, and under make test beside
# the numba warm-up, on the core those leave idle.
$(PACKAGES): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --no-compile -e '.[all,test]'  # every role (pyproject.toml's extras)
	@touch $(PACKAGES)

$(STAMP): $(PACKAGES)
	@$(PY) -m compileall -q $$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))') \
	  >/dev/null & compiled=$$!; \
	  $(MAKE) --no-print-directory stars-setup; wait $$compiled || true  # as pip: a file that fails is left
	@touch $(STAMP)

# The setup builds the deep star store when it can (about 10 s) and never fails for it.
STARS_INSTALL_ARGS ?=
stars-setup:
	@$(VENV)/bin/aposos station stars install --quiet $(STARS_INSTALL_ARGS) >/dev/null 2>&1 \
	  && echo "deep star store: $$($(VENV)/bin/aposos station stars info 2>/dev/null | head -1)" \
	  || echo "no deep star store (plate solving uses the packaged G <= 10 catalogues): \
	apt-get install astrometry-data-tycho2-07-littleendian, then make stars"

# Every test, slow and PostgreSQL ones too (-m "" clears the quick loop's selection),
# on TEST_WORKERS processes (xdist, a test file per worker); then the kernels uncompiled,
# in one process (45 tests, about 12 CPU-s: three workers would each collect the whole
# suite again: 21 CPU-s in all, 47 s against 19 s on a busy 2-core machine).
# The Debian packages the tests run (tests/system_packages.py, standard library only)
# install while pip fills the venv, and before the star store, which then takes the
# installed Tycho-2 index rather than downloading the same package again; numba compiles
# every kernel once meanwhile (make warm, below) for the test workers to load.
# BLAS on one thread per process: TEST_WORKERS processes already fill the cores, and
# OpenBLAS's threads spin on small products when cores are short (calibrate's L-BFGS-B
# on a busy 2-core machine: 19 CPU-s with them, 6 without).
TEST_WORKERS ?= 3
TEST_ENV := OPENBLAS_NUM_THREADS=1

test:
	@$(PYTHON) tests/system_packages.py & apt=$$!; \
	  $(MAKE) --no-print-directory $(PACKAGES); made=$$?; wait $$apt; exit $$made
	@$(PY) -m aposos.warmup & warm=$$!; \
	  $(MAKE) --no-print-directory $(STAMP); made=$$?; wait $$warm && exit $$made
	$(TEST_ENV) $(PY) -m pytest -q -m "" -n $(TEST_WORKERS)
	$(TEST_ENV) NUMBA_DISABLE_JIT=1 $(PY) -m pytest -q -m kernel -p no:cacheprovider -n 0

# numba's kernels compiled once into their on-disk cache (aposos/warmup.py, 60-75 CPU-s
# on a clean clone; make test runs it beside the star store), so the test workers and
# the agents and servers tests start load them rather than each compiling the same
# kernels; once cached it only loads them (seconds). Two processes: the station part
# (a fifth of the work) beside orbit and correlation, which need the same kernels.
warm: $(PACKAGES)
	$(PY) -m aposos.warmup

# The deep reference-star store (Tycho-2 to VT 12-13, 1.4 million stars beyond the packaged
# G <= 10 catalogues) from Debian's astrometry.net index: the installed package, or else
# `apt-get download` (no root needed). Where that cannot work the solver keeps the packaged
# catalogues; `aposos station stars install --index FILE` or `... import FILE` fill it by hand.
stars: $(STAMP)
	$(VENV)/bin/aposos station stars install || { \
	  echo "no deep star store: plate solving uses the packaged catalogues (G <= 10)."; \
	  echo "On a Debian machine: apt-get install astrometry-data-tycho2-07-littleendian, then make stars;"; \
	  echo "elsewhere: aposos station stars import FILE (a Gaia or UCAC4 extract)."; }

demo: $(STAMP)
	$(VENV)/bin/aposos demo --out demo-output

bench: $(STAMP)
	$(PY) benchmarks/bench_sgp4.py
	$(PY) benchmarks/bench_radec.py

lint: $(STAMP)
	$(VENV)/bin/ruff check aposos tests benchmarks

clean:
	rm -rf $(VENV) demo-output .pytest_cache
