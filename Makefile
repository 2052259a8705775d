# The course's commands. Each one sets up .venv (from requirements.txt) when it is missing or stale.
#   make test   unit tests (tests/) + every chapter executed by nbval, after ruff
#   make book   the Jupyter Book in _build/html, executing the chapters, zero warnings allowed,
#               then no broken internal link (book/check_links.py)
#   make lab    JupyterLab on the chapters
#   make assignments CHAPTERS="02 05"   student versions (nbgrader) in _build/student

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test book lab assignments lint format clean

CHAPTERS ?=

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check fcnlib tests
	$(BIN)/python -m pytest

book: $(STAMP)
	$(BIN)/jupyter-book build . --warningiserror --nitpick --keep-going
	$(BIN)/python book/check_links.py _build/html

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks

assignments: $(STAMP)
	$(BIN)/python book/assignments.py $(if $(CHAPTERS),$(CHAPTERS),--all) --out _build/student

lint: $(STAMP)
	$(BIN)/ruff check fcnlib tests
	$(BIN)/ruff format --check fcnlib tests

format: $(STAMP)
	$(BIN)/ruff format fcnlib tests
	$(BIN)/ruff check --fix fcnlib tests

clean:
	rm -rf _build .pytest_cache .ruff_cache
