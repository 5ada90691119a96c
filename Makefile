# The whole set-up is `make up` (dev stack on an embedded local PostgreSQL) and `make test`.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK ?= dev
PG15_BIN ?= /usr/lib/postgresql/15/bin

# Offline by default: local file backend inside the project, no update checks, no plugin downloads.
export PULUMI_BACKEND_URL ?= file://$(CURDIR)/.pulumi-state
export PULUMI_CONFIG_PASSPHRASE ?= dev-only
export PULUMI_SKIP_UPDATE_CHECK := true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION := true
export PULUMI_SKIP_CONFIRMATIONS := true
export PYTHONDONTWRITEBYTECODE := 1

WITH_CLI = PATH="$$(scripts/ensure-pulumi.sh):$$PATH"
# Only the dev stack targets the embedded local database; other stacks point at their own servers.
LOCAL_DB = $(if $(filter dev,$(STACK)),db-start,)
# Sources of the pulumi-postgresql plugin for an offline build (see README, "The pulumi-postgresql plugin").
# The first of these that holds the archives: beside the checkout (../shared), or this machine kind's /work/shared.
PULUMI_POSTGRESQL_SRC ?= $(patsubst %/SHA256SUMS,%,$(firstword $(wildcard $(abspath $(CURDIR)/../shared/vendor/pulumi-postgresql)/SHA256SUMS /work/shared/vendor/pulumi-postgresql/SHA256SUMS)))
export PULUMI_POSTGRESQL_SRC
# A stack that declares roles needs the plugin; one without roles never loads it.
PLUGIN = $(if $(shell grep -qs '^ *junkquote-db:roles:' Pulumi.$(STACK).yaml && echo yes),plugin,)

.PHONY: help venv cli plugin test-plugin db-start db-stop db-destroy stack up preview drift destroy rollback outputs pr-report ephemeral-up ephemeral-down rehearse lint-workflows test test-unit test-integration test-e2e test-pg15 bench bench-preview bench-backfill

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

venv: $(VENV)/.installed ## create the virtualenv and install the pinned dependencies

cli: ## obtain the Pulumi CLI (PATH, or built from the pinned Go modules and cached)
	@scripts/ensure-pulumi.sh >/dev/null && echo "pulumi CLI: $$(scripts/ensure-pulumi.sh)"

plugin: cli ## obtain the pulumi-postgresql plugin (installed, or built from PULUMI_POSTGRESQL_SRC and cached)
	@dir=$$($(WITH_CLI) tools/postgresql-plugin/build.sh) && echo "pulumi-postgresql plugin: $$dir"

# For the tests: without the plugin (and no sources to build it) the e2e access tests skip locally; CI=true fails.
test-plugin: cli
	@$(WITH_CLI) tools/postgresql-plugin/build.sh >/dev/null || { \
	  if [[ "$${CI:-}" =~ ^(1|true|yes)$$ ]]; then exit 1; fi; \
	  echo "warning: no pulumi-postgresql plugin; the e2e tests of roles and grants will be skipped" >&2; }

db-start: venv ## start the embedded dev PostgreSQL (127.0.0.1:54329, data in .localdb/)
	$(PY) -m infra.localdb start --database junkquote

db-stop: venv ## stop the embedded dev PostgreSQL
	$(PY) -m infra.localdb stop

db-destroy: venv ## stop the dev PostgreSQL and delete its data
	$(PY) -m infra.localdb destroy

stack: venv cli
	@mkdir -p .pulumi-state
	@$(WITH_CLI) pulumi stack select $(STACK) --create --non-interactive >/dev/null

up: venv cli $(PLUGIN) $(LOCAL_DB) stack ## apply the dev stack (STACK=...) and print its outputs
	$(WITH_CLI) pulumi up --yes --non-interactive --stack $(STACK)
	$(WITH_CLI) pulumi stack output --stack $(STACK) --json

preview: venv cli $(PLUGIN) $(LOCAL_DB) stack ## show what `up` would run, per batch, with locks and lint (DIFF=1 for full SQL)
	$(WITH_CLI) pulumi preview --non-interactive --stack $(STACK) $(if $(DIFF),--diff --show-full-output,)

drift: venv cli $(PLUGIN) $(LOCAL_DB) stack ## exit non-zero when the live schema differs from what the batches built (refresh, nothing written)
	env -u PULUMI_SKIP_CONFIRMATIONS $(WITH_CLI) pulumi refresh --preview-only --expect-no-changes --non-interactive --diff --stack $(STACK)

# --run-program: the program reads the stack config as it is now, so `migrations.protected: true` holds even
# before an `up` has written it into the resources.
destroy: venv cli $(PLUGIN) $(LOCAL_DB) stack ## roll back every batch of the stack, newest first (refused on protected stacks)
	$(WITH_CLI) pulumi destroy --yes --non-interactive --run-program --stack $(STACK)

# Rolls back BATCH and every batch after it, newest first, on purpose: one `pulumi up` with
# JUNKQUOTE_DB_ROLLBACK_FROM set (for that run only; nothing is written to the stack's config). The ledger keeps
# each batch's files, so this also works when the batch's folder is gone from the checkout.
rollback: venv cli $(PLUGIN) $(LOCAL_DB) stack ## roll back BATCH=NNNN_slug and every later batch (refused on protected stacks)
	@test -n "$(BATCH)" || { echo "usage: make rollback STACK=<stack> BATCH=<NNNN_slug>" >&2; exit 1; }
	JUNKQUOTE_DB_ROLLBACK_FROM="$(BATCH)" $(WITH_CLI) pulumi up --yes --non-interactive --stack $(STACK)
	@echo "rolled back $(BATCH) and every later batch; the next \`make up\` applies them again while their folders are in sql/"

outputs: venv cli stack ## print the stack outputs
	$(WITH_CLI) pulumi stack output --stack $(STACK) --json

# The Markdown review of what each stack in STACKS will do (a PR comment); OUT=file writes it there.
STACKS ?= $(STACK)
pr-report: venv cli ## Markdown review of what STACKS="staging prod" will do: blockers, steps, locks, lint, SQL, ER diagram
	@$(WITH_CLI) $(PY) -m infra.pr_report $(STACKS) $(if $(OUT),--out $(OUT),)

# An ephemeral stack per pull request (infra/pipeline): PR=<number> names it pr-<number>; BASE (staging) gives its
# settings and server, FROM=<stack> restores a pg_dump of that stack first (DATA=schema|full).
BASE ?= staging
PIPELINE_ARGS = --pr "$(PR)" --base $(BASE) $(if $(FROM),--restore-from $(FROM),) $(if $(DATA),--data $(DATA),)
define pipeline
	@test -n "$(PR)" || { echo "usage: make $(1) PR=<number> [BASE=staging] [FROM=prod] [DATA=schema|full]" >&2; exit 1; }
	$(WITH_CLI) $(PY) -m infra.pipeline $(1) $(PIPELINE_ARGS)
endef

ephemeral-up: venv cli plugin ## create pr-<PR> from BASE's settings (roles included) on a fresh database, then `pulumi up`
	$(call pipeline,up)

ephemeral-down: venv cli plugin ## `pulumi destroy` pr-<PR> (rollbacks, roles), drop its database, remove the stack
	$(call pipeline,down)

rehearse: venv cli plugin ## rollback rehearsal on a fresh pr-<PR>: apply, destroy, compare the catalog, apply again
	$(call pipeline,rehearse)

lint-workflows: venv ## actionlint and zizmor on .github/workflows (also part of `make test`)
	"$$(tools/actionlint/build.sh)/actionlint" .github/workflows/*.yml
	$(VENV)/bin/zizmor --offline --persona pedantic --no-progress .github/workflows

# pytest exit code 5 means "no tests collected": a tier that ran nothing is a failure, not a pass.
PYTEST = $(WITH_CLI) $(PY) -m pytest
define run_pytest
	rc=0; $(PYTEST) $(1) || rc=$$?; \
	if [[ $$rc == 5 ]]; then echo "no tests were collected in $(1)" >&2; exit 1; fi; exit $$rc
endef

test: venv cli test-plugin ## run every tier: unit, integration (embedded PostgreSQL 18), e2e (real Pulumi CLI)
	$(call run_pytest,tests)

test-unit: venv
	$(call run_pytest,tests/unit)

test-integration: venv
	$(call run_pytest,tests/integration)

test-e2e: venv cli test-plugin
	$(call run_pytest,tests/e2e)

test-pg15: venv ## run the integration tier against the machine's PostgreSQL 15 ($(PG15_BIN))
	@test -x $(PG15_BIN)/postgres || { echo "PostgreSQL 15 not found in $(PG15_BIN)" >&2; exit 1; }
	data=$$(mktemp -d /tmp/jq-pg15-XXXXXX); port=$$($(PY) -c 'from infra.localdb import free_port; print(free_port())'); \
	trap '$(PY) -m infra.localdb destroy --data $$data/data --port $$port --bin $(PG15_BIN) >/dev/null; rm -rf $$data' EXIT; \
	$(PY) -m infra.localdb start --data $$data/data --port $$port --bin $(PG15_BIN); \
	rc=0; PG_TEST_DSN=postgresql://postgres@127.0.0.1:$$port/postgres $(PYTEST) tests/integration || rc=$$?; \
	if [[ $$rc == 5 ]]; then echo "no tests were collected" >&2; exit 1; fi; exit $$rc

bench: venv ## measure write stalls while Batch 1 applies (ROWS=2000000 by default)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	$(PY) -m bench.run $(if $(ROWS),--rows $(ROWS),)

bench-preview: venv cli ## measure no-op `pulumi preview` and `refresh` with 1 batch vs 200 batches and 40 tables
	$(WITH_CLI) $(PY) -m bench.preview

bench-backfill: venv ## batch 0002's backfill under writers: adaptive vs fixed 1,000 rows vs one transaction, with a replica (LEADS=2000000)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	$(PY) -m bench.backfill $(if $(LEADS),--leads $(LEADS),) $(ARGS)
