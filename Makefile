# hwconv: two commands on a fresh machine.
#   make demo   - the main job on the bundled example
#   make test   - the whole test suite (.ci/run calls this)
# Both create .venv and install what they need (pip; Debian's iverilog via apt-get).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.hwconv-installed
PYTEST_ARGS ?=
JOBS   ?= 2

.PHONY: demo test test-fast sim-tools bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# Icarus Verilog for the cocotb tests: Debian's package, installed when missing.
sim-tools:
	@command -v iverilog >/dev/null 2>&1 || { \
	  echo "hwconv: installing Icarus Verilog (Debian package iverilog)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq iverilog >/dev/null; } || { \
	    echo "hwconv: could not install iverilog with apt-get; install Icarus Verilog >= 11 and rerun" >&2; exit 1; }; }

demo: $(STAMP)
	$(VENV)/bin/hwconv demo

# Under CI the slow sweeps run in their reduced form.
test: $(STAMP) sim-tools
	HWCONV_SLOW_REDUCED=$${HWCONV_SLOW_REDUCED:-$${CI:+1}} $(PY) -m pytest -n $(JOBS) $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -n $(JOBS) -m "not slow and not cocotb" $(PYTEST_ARGS)

bench: $(STAMP)
	for b in bench/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build .pytest_cache .hypothesis
