# Set-up is automatic: the first target that needs .venv creates it from pyproject.toml.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,sb3,ray]'
	touch $@

demo: $(VENV)/.installed  ## a quick study: Fig. 4 at small budgets, results in results/ablation/
	$(PY) -m studies.ablation --quick

test: $(VENV)/.installed  ## the whole test suite
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) -m benchmarks.plant

clean:
	rm -rf $(VENV) results .pytest_cache .hypothesis
