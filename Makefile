# Two commands from a fresh clone (only python3 and make needed):
#   make        create .venv, install ntxmeta, run the whole workflow (results/)
#   make test   create .venv, install ntxmeta with test tools, run the tests
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CORES  ?= 2
STAMP  := $(VENV)/.installed

.PHONY: all run report test bench clean distclean

all: run report

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[workflow,test]"
	touch $@

run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)

report: run
	$(BIN)/snakemake --cores $(CORES) --report results/snakemake_report.html

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/bench.py

clean:
	rm -rf results/* data/processed/* .snakemake logs
	touch results/.gitkeep data/processed/.gitkeep

distclean: clean
	rm -rf $(VENV)
