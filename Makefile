# The two commands of the README:
#   make lab    set up .venv (first time only) and open the workbook in JupyterLab
#   make test   set up .venv with the test tools and a browser, then run every test
# Other targets: make notebooks (re-execute and store the notebooks' outputs),
#                make benchmark (speed numbers for the README).

PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python

.PHONY: lab test setup setup-test browser notebooks benchmark clean

# JupyterLab refuses to start as root (e.g. in a container) unless told that is intended.
ALLOW_ROOT = $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: setup
	$(VENV)/bin/jupyter lab notebooks/ $(ALLOW_ROOT)

test: setup-test browser
	$(PY) -m pytest

setup: $(VENV)/.kdkit-installed
setup-test: $(VENV)/.kdkit-test-installed

$(VENV)/.kdkit-installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.kdkit-test-installed: $(VENV)/.kdkit-installed
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

browser:
	bash scripts/install_browser.sh

notebooks: setup
	$(PY) scripts/execute_notebooks.py notebooks/*.ipynb

benchmark: setup
	$(PY) scripts/benchmark.py

clean:
	rm -rf $(VENV)
