# `make bench`: one run of benchmarks/bench.py (a thin script over ct_local.bench), side by side:
# the bare forward pass, the model server alone over gRPC, the gateway at concurrency 1/4/16/32, a
# 30-slice series, gateway memory and start time, and the performance targets as ratios
# (docs/benchmarks.md says how to read them).
# Prints one markdown table and writes $(BENCH_OUT)/latest.json and latest.md; about 2-3 minutes.
# Included by the top-level Makefile (`-include mk/bench.mk`), which defines PY and `venv`.
#   make bench BENCH_ARGS="--duration 5 --record"   # shorter levels; also benchmarks/results/<date>.md

PY ?= .venv/bin/python
BENCH_OUT ?= build/bench
BENCH_ARGS ?=

.PHONY: bench bench-memory bench-models

bench: venv ## the side-by-side benchmark (needs TensorFlow, the committed models, ../shared)
	$(PY) benchmarks/bench.py --out $(BENCH_OUT) $(BENCH_ARGS)

bench-memory: venv ## a worker's peak memory and time per bomb class of issue 17 (about 40 s)
	$(PY) benchmarks/memory_bombs.py

bench-models: venv ## every committed model version's forward pass at batch 1 and 16 (about 1 min)
	$(PY) benchmarks/model_cost.py
