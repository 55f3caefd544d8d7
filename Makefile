# Set-up is automatic: the first target that needs .venv creates it from pyproject.toml.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed  ## a quick study (falls back to one episode until studies exist)
	$(PY) -m dtnopt run --solver greedy --devices 20 --sbs 3 --slots 200 --seed 0

test: $(VENV)/.installed  ## the whole test suite
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) -m benchmarks.plant

clean:
	rm -rf $(VENV) results .pytest_cache .hypothesis
