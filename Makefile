# ct-triage: `make run` serves the committed models locally; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The direct pins (one .in file per extra) and the locks pip-compile makes of them (`make lock`).
GATEWAY_IN := gateway/requirements.in
DICOM_NODE_IN := dicom-node/requirements.in
DEV_IN := $(GATEWAY_IN) training/requirements.in model-server/requirements.in $(DICOM_NODE_IN) \
	requirements-dev.in
GATEWAY_LOCK := gateway/requirements.lock
DICOM_NODE_LOCK := dicom-node/requirements.lock
DEV_LOCK := requirements-dev.lock
PIP_COMPILE := $(VENV)/bin/pip-compile --quiet --allow-unsafe --generate-hashes \
	--no-emit-find-links --no-emit-index-url --strip-extras
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(DEV_LOCK) | sha256sum | cut -c1-12)
# The edit loop: no process-starting or slow tests, fewer hypothesis examples (tests/conftest.py).
FAST := -m "not slow and not integration" --hypothesis-profile=fast
LANES := gateway contract training standin deploy integration dicom_node
TASK ?= brain-stroke
DATA ?=
ARGS ?=
LOCK_ARGS ?=
DOCKERFILES := gateway/Dockerfile model-server/Dockerfile dicom-node/Dockerfile

.PHONY: help venv lock run test test-fast $(addprefix test-,$(LANES)) lint format train audit \
	protos clean tf-compat

help:
	@echo "make run     - the local model server + gateway on :9696, restarted if they die (Ctrl-C stops both)"
	@echo "make test    - the whole test suite (what CI runs)"
	@echo "make test-fast - the edit loop: no slow or integration tests, hypothesis profile fast"
	@echo "make test-gateway|contract|training|standin|deploy|integration|dicom_node - one lane"
	@echo "make venv    - .venv from requirements-dev.lock, the project editable"
	@echo "make lock    - recompile gateway/, dicom-node/requirements.lock and requirements-dev.lock"
	@echo "make train TASK=brain-stroke|brain-tumor|spine-fracture [DATA=folder] [ARGS=...]"
	@echo "make audit TASK=... [DATA=folder]   - dataset audit report"
	@echo "make lint    - ruff, zizmor (workflows), hadolint (Dockerfiles); make format"
	@echo "make protos / kind-smoke (see docs/kubernetes.md)"
	@echo "make browser-deps / browser-test / screenshot (the web page, docs/web-page.md)"
	@echo "make bench   - latency, throughput, memory side by side (docs/benchmarks.md)"
	@echo "make tf-compat - committed models under the TF Serving image's TensorFlow (docs/tf-compat.md)"

venv: $(STAMP)

# Every package from the hashed lock (pip included), then the project itself without resolving
# anything (`pip install -e '.[dev]'` also works, unlocked).
$(STAMP): pyproject.toml $(DEV_LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $@

# Recompile both locks from the .in files (transitive pins stay unless an input needs a change;
# `make lock LOCK_ARGS=--upgrade` takes the newest). tests/deploy/test_requirements.py
# checks each lock is exactly the closure of its inputs.
lock: venv
	$(PIP_COMPILE) $(LOCK_ARGS) -o $(GATEWAY_LOCK) $(GATEWAY_IN)
	$(PIP_COMPILE) $(LOCK_ARGS) -o $(DICOM_NODE_LOCK) $(DICOM_NODE_IN)
	$(PIP_COMPILE) $(LOCK_ARGS) -o $(DEV_LOCK) $(DEV_IN)

run: venv
	$(VENV)/bin/ct-triage serve

test: venv
	$(PY) -m pytest -q

test-fast: venv
	$(PY) -m pytest -q $(FAST)

$(addprefix test-,$(LANES)): test-%: venv
	$(PY) -m pytest -q tests/$*

# zizmor (GitHub Actions security) and hadolint come from the dev lock (wheels that ship the
# binaries; Debian has no hadolint). zizmor runs offline: CI reaches no GitHub API, so its online
# audits (impostor commits behind a pinned SHA, known-vulnerable actions) do not run here.
lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/zizmor --offline --no-progress .github/workflows
	$(VENV)/bin/hadolint $(DOCKERFILES)

format: venv
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

train: venv
	$(PY) -m training.train --task $(TASK) $(if $(DATA),--data $(DATA)) $(ARGS)

audit: venv
	$(PY) -m training.data.audit --task $(TASK) $(if $(DATA),--data $(DATA))

# Regenerate the gateway's TF-free protobuf module (tests/gateway/test_tfs_protos.py checks it is current).
protos: venv
	$(PY) -m grpc_tools.protoc -Igateway/tfs/protos --python_out=gateway/tfs --pyi_out=gateway/tfs gateway/tfs/protos/tfs_api.proto

# The committed SavedModels under the TensorFlow of the pinned tensorflow/serving image (model-server/Dockerfile).
tf-compat: venv
	$(VENV)/bin/ct-triage tf-compat

clean:
	rm -rf build .pytest_cache .ruff_cache

-include mk/kind.mk
-include mk/browser.mk
-include mk/bench.mk
-include mk/dicom.mk
