# ct-triage: `make run` serves the committed models locally; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
REQUIREMENTS := pyproject.toml requirements-dev.in gateway/requirements.in training/requirements.in model-server/requirements.in
STAMP := $(VENV)/.installed-$(shell cat $(REQUIREMENTS) | sha256sum | cut -c1-12)
TASK ?= brain-stroke
DATA ?=
ARGS ?=

.PHONY: help venv run test lint format train audit protos clean tf-compat

help:
	@echo "make run     - start the local model server + gateway on :9696 (Ctrl-C stops both)"
	@echo "make test    - the whole test suite"
	@echo "make train TASK=brain-stroke|brain-tumor|spine-fracture [DATA=folder] [ARGS=...]"
	@echo "make audit TASK=... [DATA=folder]   - dataset audit report"
	@echo "make lint / format / protos / kind-smoke (see docs/kubernetes.md)"
	@echo "make browser-deps / browser-test / screenshot (the web page, docs/web-page.md)"
	@echo "make bench   - latency, throughput, memory side by side (docs/benchmarks.md)"
	@echo "make tf-compat - committed models under the TF Serving image's TensorFlow (docs/tf-compat.md)"

venv: $(STAMP)

$(STAMP): $(REQUIREMENTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

run: venv
	$(PY) scripts/run_stack.py

test: venv
	$(PY) -m pytest -q

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: venv
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

train: venv
	$(PY) -m training.train --task $(TASK) $(if $(DATA),--data $(DATA)) $(ARGS)

audit: venv
	$(PY) -m training.audit --task $(TASK) $(if $(DATA),--data $(DATA))

# Regenerate the gateway's TF-free protobuf module (tests/gateway/test_tfs_protos.py checks it is current).
protos: venv
	$(PY) -m grpc_tools.protoc -Igateway/protos --python_out=gateway --pyi_out=gateway gateway/protos/tfs_api.proto

# The committed SavedModels under the TensorFlow of the pinned tensorflow/serving image (model-server/Dockerfile).
tf-compat: venv
	$(PY) scripts/tf_compat.py

clean:
	rm -rf build .pytest_cache .ruff_cache

-include mk/kind.mk
-include mk/browser.mk
-include mk/bench.mk
