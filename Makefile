# The two set-up commands of the README:
#   make reproduce   run every notebook headless (papermill) on the embedded synthetic data
#   make test        unit tests (on every core: pytest-xdist), then nbval over every notebook at the ci preset
# Both create or reuse .venv first (scripts/setup_venv.sh).
VENV ?= .venv
PY := $(VENV)/bin/python
PRESET ?= smoke
DEVICE ?=
OUT ?= results
JOBS ?= 1

.PHONY: setup reproduce test
setup:
	@VENV=$(VENV) scripts/setup_venv.sh

reproduce: setup
	$(PY) -m hffne_lib.reproduce --preset $(PRESET) $(if $(DEVICE),--device $(DEVICE)) --out $(OUT) --jobs $(JOBS)

test: setup
	$(PY) -m pytest -q -n auto tests
	$(PY) -m pytest -q --nbval-lax notebooks
