# talkreel — the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CPU build by default; GPU users pick theirs, e.g. `make setup TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"`.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-all lint bench reliability schema clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: an unpinned resolve would pull several GB of CUDA wheels.
	$(BIN)/python -m pip install -q $(TORCH)
	# the ray extra too: its executor's tests start a real local Ray cluster
	$(BIN)/python -m pip install -q -e '.[dev,ray]'
	touch $(STAMP)

demo: setup
	$(BIN)/python -m pipelines.engines.preview.demo   # the demo persona's portrait, from scikit-image
	$(BIN)/talkreel render jobs/ --out out/

test: setup
	$(BIN)/python -m pytest -q

test-all: setup
	$(BIN)/python -m pytest -q -m ''

lint: setup
	$(BIN)/ruff check cli pipelines tests bench docs/make_images.py
	$(BIN)/ruff format --check cli pipelines tests bench docs/make_images.py

bench: setup
	$(BIN)/python bench/run_all.py

reliability: setup
	$(BIN)/python bench/reliability.py   # bad inputs, kills, resumes, concurrent processes: how many held

schema: setup
	$(BIN)/talkreel schema --out schema/

clean:
	rm -rf out .pytest_cache
