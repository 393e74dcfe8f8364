# Two commands from a fresh clone (only python3 and make needed):
#   make        create .venv, install ntxmeta, run the whole workflow (results/)
#   make test   create .venv, install ntxmeta with test tools, run the tests
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CORES  ?= 2
STAMP  := $(VENV)/.installed
# `make` prints one line per finished step (ntxmeta.progress); VERBOSE=1 shows
# Snakemake's whole output. Each step's log is under logs/.
QUIET  := | $(if $(VERBOSE),NTXMETA_VERBOSE=1 ,)$(BIN)/python -m ntxmeta.progress --report results/report.html
# the pipe keeps Snakemake's exit status
SHELL  := /bin/bash
.SHELLFLAGS := -o pipefail -c

.PHONY: all run report test bench clean distclean

all: run report

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[workflow,test]"
	touch $@

run: $(STAMP)
	@$(BIN)/snakemake --cores $(CORES) 2>&1 $(QUIET)

# Snakemake's report is rebuilt only when an output is newer than it (a
# re-run with nothing changed rewrites no file).
SMK_REPORT := results/snakemake_report.html
report: run
	@if [ ! -f $(SMK_REPORT) ] || [ -n "$$(find results data/processed -type f -newer $(SMK_REPORT) ! -name '.*' -print -quit)" ]; then \
	  $(BIN)/snakemake --cores $(CORES) --report $(SMK_REPORT) 2>&1 $(QUIET); \
	else echo "$(SMK_REPORT) is up to date"; fi

# Tests run on every core (pytest-xdist; a test file stays on one worker, so
# the workflow copies a file shares are built once).
test: $(STAMP)
	@echo "make test: about 10 minutes on 2 cores (the workflow end to end on copies of the project, metafor conformance, headless Chromium)"
	$(BIN)/python -m pytest -q -n $(CORES) --dist loadfile

bench: $(STAMP)
	$(BIN)/python bench/bench.py

# The evidence changelog (results/changelog.*) is history: `make clean` removes
# it with everything else unless KEEP_CHANGELOG=1 is given.
clean:
	@if [ -n "$(KEEP_CHANGELOG)" ]; then \
	  find results -mindepth 1 -maxdepth 1 ! -name changelog.json ! -name changelog.md -exec rm -rf {} +; \
	else rm -rf results/*; fi
	rm -rf data/processed/* .snakemake logs
	touch results/.gitkeep data/processed/.gitkeep

distclean: clean
	rm -rf $(VENV)
