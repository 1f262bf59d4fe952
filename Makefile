# Two commands matter: `make demo` and `make test`. Both create .venv and install on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install lock demo test drills lint format ui benchmarks bench screenshots clean

# constraints.txt pins every package to the version CI tested; `make lock` refreshes it.
$(INSTALLED): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(INSTALLED)

install: $(INSTALLED)

# Resolve pyproject.toml's ranges afresh in a scratch venv and pin the result in constraints.txt.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[dev]'
	{ echo "# Every package at the version CI tested; regenerate with \`make lock\`."; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable; } > constraints.txt
	rm -rf .lock-venv

demo: $(INSTALLED)
	$(BIN)/musicbutler demo

test: $(INSTALLED)
	$(BIN)/python -m pytest

# The scheduler-detection matrix: real daemons at the defaults, SQLite and PostgreSQL instances,
# one host and two (namespaces), two runs each, and the false alarms; prints every delay. And the
# deployment test: the shipped schedule's real run under a webserver and `musicbutler daemon`; the
# SMTP retry drill at the shipped backoff; a second scheduler detected and a restart watched for
# false alarms (one SQLite cell each); two dagster-daemons on one instance still sending once;
# processes racing to create a fresh Dagster instance; the Celery drill: 4 shards on two
# dagster-celery workers, one SIGKILLed mid-shard; a SIGKILL mid-send reconciled; a week of weekly
# digests under four concurrent runs; idle connections against the web server; hostile names
# and titles from MusicBrainz in a sent digest.
drills: $(INSTALLED)
	$(BIN)/python -m pytest -m drills_matrix -s tests/drills/test_scheduler_matrix.py \
	  tests/integration/test_deployment.py tests/drills/test_smtp_faults.py \
	  tests/drills/test_scheduler_detection.py tests/drills/test_instance_race.py \
	  tests/drills/test_celery_executor.py tests/drills/test_schedulers.py \
	  tests/drills/test_crash.py tests/drills/test_weekly_digest.py \
	  tests/drills/test_web_idle_connections.py tests/drills/test_bad_musicbrainz_records.py

# ruff, pyright (standard mode) and the import contracts of pyproject.toml; pre-commit runs the same.
lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pyright --pythonpath $(BIN)/python
	$(BIN)/lint-imports

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The Dagster UI (`musicbutler ui`: dagster dev) on the instance `make demo` wrote to, with its
# instance settings, reading the bundled MusicBrainz pages and no ListenBrainz, as the demo does.
ui: $(INSTALLED)
	MUSICBUTLER_HOME=$(CURDIR)/.musicbutler \
	MUSICBUTLER_MUSICBRAINZ_URL=file://$(CURDIR)/musicbutler_pipeline/sources/data/sample/musicbrainz \
	MUSICBUTLER_LISTENBRAINZ_URL=off \
	$(BIN)/musicbutler ui

# docs/digest.png from a sample digest, and docs/dagster-*.png: the Dagster UI on the demo's
# instance (`make demo` first, once; it is not re-run here), with headless Chromium driven by
# Playwright (Debian: chromium fonts-noto-cjk).
screenshots: $(INSTALLED)
	@command -v chromium >/dev/null 2>&1 || { echo "needs Chromium: apt-get install -y chromium fonts-noto-cjk" >&2; exit 1; }
	$(BIN)/python scripts/screenshot_digest.py --out docs/digest.png
	$(BIN)/python scripts/screenshot_preferences.py --out docs/preferences.png
	$(BIN)/python scripts/screenshot_dagster.py --out-dir docs --home .musicbutler

benchmarks: $(INSTALLED)
	@for script in benchmarks/*.py; do \
	  name=$$(basename $$script .py); echo "== $$script"; $(BIN)/python -m benchmarks.$$name || exit 1; \
	done

# The end-to-end benchmark through the user-facing commands (PostgreSQL, an SMTP sink on loopback),
# each figure beside its floor, written to benchmarks/RESULTS.md. About 10 minutes on 2 busy
# cores; BENCH_LEVELS="1000 10000 100000" adds 100,000 subscribers (about half an hour more).
BENCH_LEVELS ?= 1000 10000
bench: $(INSTALLED)
	$(BIN)/python -m benchmarks.end_to_end --subscribers $(BENCH_LEVELS) --results benchmarks/RESULTS.md

clean:
	rm -rf .musicbutler .pytest_cache .ruff_cache
