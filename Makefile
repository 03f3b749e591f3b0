# The two commands of the README: `make run` and `make test`. Everything else is theirs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# Links in reminders and notices point at what `make run` serves, unless told otherwise.
SITE_URL ?= http://127.0.0.1:$(PORT)
# The local demo and the tests run with DEBUG=1: plain HTTP, demo keys (see .env.example).
LOCAL := DEBUG=1

.PHONY: run test install lint scan format clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is needed"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

run: install
	$(LOCAL) $(BIN)/python manage.py migrate --noinput
	$(LOCAL) $(BIN)/python manage.py load_protocol
	$(LOCAL) $(BIN)/python manage.py load_demo
	$(LOCAL) PORT=$(PORT) SITE_URL='$(SITE_URL)' $(BIN)/python manage.py rundemo

test: install
	$(LOCAL) $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# bandit over the deployed code (settings in pyproject.toml): no medium or high finding that
# is not explained where it stands (`# nosec Bxxx: why`) or in docs/security.md. bandit's own
# exit code only says that it found something: the checker decides. wapiti: .ci/wapiti.
scan: install
	mkdir -p var
	$(BIN)/bandit -c pyproject.toml -r . --severity-level medium --quiet -f json -o var/bandit.json || true
	$(BIN)/python .ci/bandit_findings.py var/bandit.json docs/security.md

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf var staticfiles tests/output
