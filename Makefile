# The course's commands. Each one sets up .venv (from requirements.txt) when it is missing or stale.
#   make test   unit tests (tests/) + every chapter executed by nbval, after ruff; the slowest
#               tests' times at the end (--durations)
#   make unit   the fast inner loop: ruff and the unit tests not marked slow (no chapter, no
#               training of more than a few seconds); under 3 minutes on 2 CPU cores
#   make test-bf16   chapter 6 under nbval with bf16 autocast on the CPU (FCN_CPU_BF16=1: the
#               path a GPU takes; about 7 minutes); the unit tests check its rule on a small net
#   make book   the public Jupyter Book in _build/html, executing the chapters, zero warnings
#               allowed, then no broken internal link (book/check_links.py), no graded
#               exercise's solution or hidden test on its pages (book/check_public.py), and
#               the live page run in headless Chromium (tests/test_live_book.py)
#   make book-instructor   the instructors' edition, every solution shown, in
#               _build/instructor/_build/html (not published)
#   make lab    JupyterLab on the chapters, as learners see them: MyST rendered (jupyterlab-myst),
#               nbgrader's menus and server extensions off (book/lab-config)
#   make lab-instructor   JupyterLab with nbgrader's menus (create and grade assignments)
#   make assignments CHAPTERS="02 05"   student versions (nbgrader) in _build/student
#   make colab  copies of the chapters in plain Markdown for Colab and JupyterLab, in
#               _build/colab/notebooks (book/colab.py); published on the `colab` branch
#   make test-copies   those copies executed by nbval, as the chapters are (as long as make test's
#               chapters: about 35 minutes on 2 CPU cores)
#   make grading   nbgrader's autograde of every chapter's master (fast path), timed; pick
#               chapters with CHAPTERS="05 07"
#   make gpu-check   on a machine with a CUDA GPU: the unit tests, every chapter under nbval
#               (side by side, 2 threads each) and the throughput benchmark, one summary line
#               per step (also in _build/gpu-check/summary.txt); see tests/gpu_check.py --help

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test unit test-bf16 book book-instructor lab lab-instructor assignments colab test-copies grading gpu-check lint format clean

CHAPTERS ?=

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -c constraints.txt
	@touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check fcnlib tests
	$(BIN)/python -m pytest --durations=30

unit: $(STAMP)
	$(BIN)/ruff check fcnlib tests
	$(BIN)/python -m pytest tests -m "not slow" --durations=10

test-bf16: $(STAMP)
	@# Chapter 6 with amp="auto" resolving to bf16 on the CPU (FCN_CPU_BF16=1), the path a GPU
	@# takes: scores meant to agree must be computed in one precision, whichever it is.
	FCN_CPU_BF16=1 $(BIN)/python -m pytest notebooks/06_full_scale_voc.ipynb

book: $(STAMP)
	$(BIN)/jupyter-book build . --warningiserror --nitpick --keep-going
	$(BIN)/python book/check_links.py _build/html
	$(BIN)/python book/check_public.py _build/html
	@# the published live page in headless Chromium: the chapters' nets label every scene as
	@# PyTorch does (skipped, saying so, without Chromium)
	$(BIN)/python -m pytest tests/test_live_book.py -q -rs

book-instructor: $(STAMP)
	@# the same chapters' executions (the cache in _build/.jupyter_cache), solutions shown
	FCN_BOOK=instructor $(BIN)/jupyter-book build . --path-output _build/instructor \
		--warningiserror --nitpick --keep-going
	$(BIN)/python book/check_links.py _build/instructor/_build/html

lab: $(STAMP)
	JUPYTER_CONFIG_PATH=$(CURDIR)/book/lab-config $(BIN)/jupyter lab notebooks

lab-instructor: $(STAMP)
	$(BIN)/jupyter lab notebooks

assignments: $(STAMP)
	$(BIN)/python book/assignments.py $(if $(CHAPTERS),$(CHAPTERS),--all) --out _build/student

colab: $(STAMP)
	$(BIN)/python book/colab.py

test-copies: colab
	$(BIN)/python -m pytest _build/colab/notebooks

grading: $(STAMP)
	$(BIN)/python book/grading.py $(CHAPTERS)

gpu-check: $(STAMP)
	$(BIN)/python tests/gpu_check.py

lint: $(STAMP)
	$(BIN)/ruff check fcnlib tests
	$(BIN)/ruff format --check fcnlib tests notebooks conftest.py

format: $(STAMP)
	$(BIN)/ruff format fcnlib tests notebooks conftest.py
	$(BIN)/ruff check --fix fcnlib tests

clean:
	rm -rf _build .pytest_cache .ruff_cache
