# Ferry: the two commands of the README, and the pieces they are made of.
#   make demo   run the demo deploy in the local sandbox (no AWS account)
#   make test   every check CI runs: template and ASL lint, sam build, the tests
SHELL := /bin/bash
PYTHON ?= $(shell scripts/find-python)
VENV := .venv
SAM_VENV := .venv-sam
SAM_CLI_VERSION := 1.170.0
CHECKOV_VENV := .venv-checkov

.PHONY: demo test infra unit lint bench clean

demo: $(VENV)/.installed
	$(VENV)/bin/ferry sandbox run --world examples/sandbox/world.yaml --event events/ecr-push-web-v2.json

# The infrastructure checks (mostly one process at a time: sam build, the linters) run beside the tests; each
# one's output is printed whole when it ends, and either failing fails `make test`.
test: $(VENV)/.installed $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed
	$(MAKE) --no-print-directory -j2 --output-sync=target lint infra unit

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check --quiet layers cli functions statemachine scripts bench tests
	$(VENV)/bin/ruff format --check --quiet layers cli functions statemachine scripts bench tests

infra: $(VENV)/.installed $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed
	SAM=$(SAM_VENV)/bin/sam CFN_LINT=$(VENV)/bin/cfn-lint PYTHON=$(PYTHON) scripts/check-infra

unit: $(VENV)/.installed $(SAM_VENV)/.installed
	# One worker per core (the sandbox runs on virtual time: its tests use the CPU, never sleep); work stealing
	# keeps both busy to the end when a long test comes last.
	SAM=$(SAM_VENV)/bin/sam $(VENV)/bin/pytest -q -n 2 --dist worksteal

$(VENV)/.installed: pyproject.toml requirements-dev.txt layers/ferry/requirements.txt
	@test -n "$(PYTHON)" || { echo "make: no Python 3.12 found (see scripts/find-python)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	# The layer's dependencies first, exactly as the layer gets them (pinned, hash-checked), so the tests run
	# against the layer's boto3 and botocore. Then the rest (an editable install has no hash, so it cannot join
	# the first), constrained to the same pins, without their hashes (hashes in a constraints file would turn
	# hash-checking on again): nothing moto or the dev tools need may move them.
	$(VENV)/bin/pip install -q --require-hashes -r layers/ferry/requirements.txt
	$(VENV)/bin/pip install -q -e '.[sandbox]' -r requirements-dev.txt \
		-c <(sed -n 's/^\([A-Za-z0-9._-]*==[^ ]*\).*/\1/p' layers/ferry/requirements.txt)
	touch $@

$(SAM_VENV)/.installed:
	@test -n "$(PYTHON)" || { echo "make: no Python 3.12 found (see scripts/find-python)"; exit 1; }
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q aws-sam-cli==$(SAM_CLI_VERSION)
	touch $@

# checkov in a venv of its own: its pins conflict with the dev venv's (requirements-security.txt).
$(CHECKOV_VENV)/.installed: requirements-security.txt
	@test -n "$(PYTHON)" || { echo "make: no Python 3.12 found (see scripts/find-python)"; exit 1; }
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q -r requirements-security.txt
	touch $@

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) .aws-sam .pytest_cache

# Figures, not tests: the demo's wall time, cost per deploy and its growth with rollout length, reaction
# latency, a 50-service manifest, and each function's cold-start import time (as Lambda runs it: from the layer as
# layers/ferry/Makefile builds it, with its precompiled bytecode).
bench: $(VENV)/.installed
	$(VENV)/bin/python bench/demo_deploy.py
	$(VENV)/bin/python bench/cost.py
	$(VENV)/bin/python bench/cold_start.py --bytecode lambda
