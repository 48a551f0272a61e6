# Thin wrappers over the rllc command line; nothing here that the README does not show.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= cpu
# the run directory: runs/<the profile's name> unless RUN_DIR is given (PROFILE may be a YAML path)
RUN_DIR ?=
RUN_FLAG = $(if $(RUN_DIR),--run-dir $(RUN_DIR),)
# A CPU build of torch: an unpinned torch pulls the newest CUDA build (gigabytes). On a GPU
# machine, override: make TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
TORCH_SPEC ?= torch==2.13.0

# glibc malloc settings that nearly halve training and SGLD step times on CPU (see README)
export MALLOC_MMAP_MAX_ := 0
export MALLOC_TRIM_THRESHOLD_ := 100000000000
# the numerics the weights depend on, pinned on x86-64 before any torch starts (rllc/numerics.py;
# the rllc command sets the same itself, replacing other values with one line saying so)
ifeq ($(shell uname -m),x86_64)
export ATEN_CPU_CAPABILITY := avx2
export MKL_CBWR := AVX2,STRICT
export ONEDNN_MAX_CPU_ISA := AVX2
endif

# The offline book (make book): the published notebooks of a run (rllc publish RUN_DIR), rendered
# by Sphinx + myst-nb without executing anything; MathJax from its npm package, served locally.
BOOK_NOTEBOOKS ?= docs/notebooks
BOOK_DIR ?= build/book
MATHJAX_VERSION := 3.2.2

.PHONY: venv data train reproduce notebooks test test-ci-series test-smoke-series lint unit bench clean book book-check publish

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-compile $(TORCH_SPEC)
	$(BIN)/python -m pip install -q --no-compile -e ".[dev,cluster]"
	# byte-compile on every core (pip compiles one file at a time: 86 s for the install, against 31 + 35 s
	# this way on 2 cores); like pip, files a newer Python's syntax fails on (torch's py312 tests) are skipped
	$(BIN)/python -c "import compileall, sysconfig; compileall.compile_dir(sysconfig.get_paths()['purelib'], quiet=2, workers=0)"
	touch $@

venv: $(BIN)/.installed

data: venv
	$(BIN)/rllc data --profile $(PROFILE)

train: venv
	$(BIN)/rllc train --profile $(PROFILE) $(RUN_FLAG)

# The reproduce command: every notebook with the profile (default cpu) into one run directory.
reproduce: venv
	$(BIN)/rllc data --profile $(PROFILE)
	$(BIN)/rllc notebooks --profile $(PROFILE) $(RUN_FLAG)

notebooks: reproduce

# The test command: lint, unit tests (the import-layer test among them), then every notebook
# under Papermill with profiles/ci.yaml, then nbval (lax) over the executed notebooks; the same at the
# paper's shapes with tiny counts (profiles/paper-smoke.yaml: the GPU user's path, on CPU).
# Then the book is built from the ci run's executed notebooks and checked in headless Chromium.
# Small models use a second thread poorly, so the work runs as two one-thread streams: the quick unit
# tests on two pytest-xdist workers, then the two notebook series side by side, the slow tests (SLURM,
# known learning coefficients, resumed training) after the ci series, which is the shorter of the two
# (TEST_JOBS=1: one stream with every thread). Both profiles' data are prepared first, once.
TEST_JOBS ?= 2
test: venv
	$(BIN)/ruff check rllc tests notebooks benchmarks
	$(BIN)/rllc data --profile ci
	$(BIN)/rllc data --profile profiles/paper-smoke.yaml
	$(BIN)/python -m pytest tests -m "not book and not slow" --durations=10 $(if $(filter 1,$(TEST_JOBS)),,-n $(TEST_JOBS))
	$(MAKE) -j$(TEST_JOBS) --output-sync=target test-ci-series test-smoke-series
	$(BIN)/rllc publish runs/ci-test --out build/ci-notebooks
	$(MAKE) book BOOK_NOTEBOOKS=build/ci-notebooks
	$(MAKE) book-check

# one notebook series and its nbval (the ci stream then the slow tests), one thread when the streams run side by side
SERIES_THREADS = $(if $(filter 1,$(TEST_JOBS)),,OMP_NUM_THREADS=1)
test-ci-series: venv
	$(SERIES_THREADS) $(BIN)/rllc notebooks --profile ci --run-dir runs/ci-test --quiet
	$(SERIES_THREADS) $(BIN)/python -m pytest --nbval-lax -p no:cacheprovider runs/ci-test/notebooks
	$(SERIES_THREADS) $(BIN)/python -m pytest tests -m "slow" -p no:cacheprovider --durations=10

test-smoke-series: venv
	$(SERIES_THREADS) $(BIN)/rllc notebooks --profile profiles/paper-smoke.yaml --run-dir runs/paper-smoke-test --quiet
	$(SERIES_THREADS) $(BIN)/python -m pytest --nbval-lax -p no:cacheprovider runs/paper-smoke-test/notebooks

# The reader's edition of the default run: its executed notebooks into docs/notebooks, then the book
publish: venv
	$(BIN)/rllc publish $(or $(RUN_DIR),runs/$(PROFILE)) --out docs/notebooks --readme README.md --before docs/scorecard-criteria-v1.csv

$(BOOK_DIR)/mathjax-$(MATHJAX_VERSION)/es5/tex-chtml.js:
	mkdir -p $(BOOK_DIR)/cache
	cd $(BOOK_DIR)/cache && npm pack --silent mathjax@$(MATHJAX_VERSION) >/dev/null
	rm -rf $(BOOK_DIR)/mathjax-$(MATHJAX_VERSION) && mkdir -p $(BOOK_DIR)/mathjax-$(MATHJAX_VERSION)
	tar xzf $(BOOK_DIR)/cache/mathjax-$(MATHJAX_VERSION).tgz -C $(BOOK_DIR)/mathjax-$(MATHJAX_VERSION) --strip-components=1

book: venv $(BOOK_DIR)/mathjax-$(MATHJAX_VERSION)/es5/tex-chtml.js
	rm -rf $(BOOK_DIR)/src $(BOOK_DIR)/html
	mkdir -p $(BOOK_DIR)/src
	cp -r book/. $(BOOK_DIR)/src/
	cp -r $(BOOK_NOTEBOOKS) $(BOOK_DIR)/src/notebooks
	cp -r $(BOOK_DIR)/mathjax-$(MATHJAX_VERSION)/es5 $(BOOK_DIR)/src/_static/mathjax
	$(BIN)/sphinx-build -q -b html $(BOOK_DIR)/src $(BOOK_DIR)/html
	@echo "book: $(BOOK_DIR)/html/index.html"

# Every page of the built book in headless Chromium, the network blocked (tests/test_book.py)
book-check: venv
	RLLC_BOOK_DIR=$(BOOK_DIR)/html $(BIN)/python -m pytest -p no:cacheprovider -m book tests/test_book.py -q

lint: venv
	$(BIN)/ruff check rllc tests notebooks benchmarks

unit: venv
	$(BIN)/python -m pytest tests -m "not slow"

# SGLD speed against a training step and devinterp; what caching a generator's predictions saves
# (prints ratios; not a test)
bench: venv
	$(BIN)/python benchmarks/sgld_speed.py --profile $(PROFILE) --component 0:1
	$(BIN)/python benchmarks/sgld_speed.py --profile $(PROFILE) --component 1:0
	$(BIN)/python benchmarks/sgld_speed.py --profile $(PROFILE) --component full
	$(BIN)/python benchmarks/generator_cache.py --profile $(PROFILE) --component 0:1
	$(BIN)/python benchmarks/generator_cache.py --profile $(PROFILE) --component 1:0
	$(BIN)/python benchmarks/curvature_cost.py --profile $(PROFILE) --component 0:1
	$(BIN)/python benchmarks/curvature_cost.py --profile $(PROFILE) --component 1:0
	$(BIN)/python benchmarks/curvature_cost.py --profile $(PROFILE) --component full
	$(BIN)/python benchmarks/layer_inputs.py --profile $(PROFILE) --heads 3

clean:
	rm -rf runs/ci-test runs/ci runs/paper-smoke-test build
