# unidad-bench: the commands the README and CI use.
#   make install        Python venv in .venv with the project and its dev tools (versions of requirements.lock)
#   make lock           regenerate requirements.lock from a clean install
#   make demo           the embedded demo, end to end, on this machine
#   make test           unit tests, workflow lint, dry runs, then through SLURM at once the smoke runs (FSIG, SDP)
#                       and the rehearsals of the paper DAGs (FSIG, SDP) on stand-in weights, then a preemption
#                       check (what CI runs)
#   make rehearsal      the paper DAG on stand-in weights (config/paper_fsig_rehearsal.yaml: the paper's
#                       methods and the seed methods on two targets), SLURM when root, else locally
#   make rehearsal-sdp  the SDP paper DAG on stand-in weights (config/paper_sdp_rehearsal.yaml), SLURM when root
# `make help` lists every target.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
# The test steps share a SLURM node and a smoke directory; run them one after another.
.NOTPARALLEL:
.DEFAULT_GOAL := help

PYTHON_FOR_VENV ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
SNAKEMAKE := $(VENV)/bin/snakemake
PYTEST := $(VENV)/bin/pytest
# Rewritten whenever pyproject.toml or the lock file changes, so `make install` is a no-op otherwise.
INSTALL_STAMP := $(VENV)/.unidad-install-stamp
# The exact version of every dependency (pip constraints); `make lock` regenerates it.
LOCK_FILE := requirements.lock

# Every workflow configuration; each gets a dry run under each profile below.
# config/methods.yaml is not one: it is the method catalogue the configs point to.
NOT_WORKFLOW_CONFIGS := config/methods.yaml config/methods_sdp.yaml config/methods_sdp_demo.yaml
CONFIGS := $(filter-out $(NOT_WORKFLOW_CONFIGS),$(sort $(wildcard config/*.yaml)))
DRY_RUN_PROFILES := local slurm
# The SLURM smoke run writes its results (config key results_dir), SLURM logs and
# Snakemake log into its own directory, never into results/ of the checkout.
# The FSIG smoke run, then the text-conditioned (SDP) one, each in its own directory.
SMOKE_CONFIGS ?= config/smoke.yaml config/sdp_smoke.yaml
SMOKE_ROOT ?= $(CURDIR)/.slurm-ci
# The preemption check after it (ci/slurm/check_preemption.py) works in its own directory.
PREEMPT_DIR ?= $(CURDIR)/.slurm-ci/preempt
# The rehearsal of the paper DAG: stand-in weights and staged folders under REHEARSAL_STAGE (the config's
# dataset paths point there), results, SLURM logs and Snakemake log in REHEARSAL_DIR.
REHEARSAL_CONFIG ?= config/paper_fsig_rehearsal.yaml
REHEARSAL_STAGE := .rehearsal
REHEARSAL_DIR ?= $(CURDIR)/.slurm-ci/rehearsal
# Images of the source (FFHQ) folder and of each target's full set the preparation writes: CI's sizes, the
# least that runs every code path in CI's time (make rehearsal REHEARSAL_FFHQ=3000 for a few thousand).
REHEARSAL_FFHQ ?= 300
REHEARSAL_FULL ?= 50

# The SDP rehearsal (config/paper_sdp_rehearsal.yaml; its DreamBench folders are under
# $(REHEARSAL_STAGE)/data/dreambench) keeps its stand-ins apart from the FSIG ones, each folder with its
# own standins.json.
REHEARSAL_SDP_CONFIG ?= config/paper_sdp_rehearsal.yaml
REHEARSAL_SDP_WEIGHTS := $(REHEARSAL_STAGE)/sdp-weights
REHEARSAL_SDP_DIR ?= $(CURDIR)/.slurm-ci/rehearsal-sdp

# Checks a test step skipped on this machine (pytest's skips, e.g. the LaTeX compile check without
# pdflatex; the SLURM smoke run when not root): one file per step, one line per check and why.
# `make test` prints them all as its last word, so a skip on a developer's machine is never silent.
SKIPS_DIR := .make-test-skips

export HF_HUB_OFFLINE := 1

.PHONY: help install lock demo report test test-unit test-lint test-dry-run test-slurm test-cluster smoke-run \
        rehearsal rehearsal-prepare test-rehearsal rehearsal-sdp rehearsal-sdp-prepare slurm-start slurm-stop clean-results

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) \
	    | awk 'BEGIN {FS = ":.*?## "} {printf "  make %-15s %s\n", $$1, $$2}'

install: $(INSTALL_STAMP) ## create .venv and install the project with its dev extras

$(INSTALL_STAMP): pyproject.toml $(LOCK_FILE)
	@test -x $(PYTHON) || { echo "creating $(VENV) with $(PYTHON_FOR_VENV)"; $(PYTHON_FOR_VENV) -m venv $(VENV); }
	$(PYTHON) -m pip install --quiet -c $(LOCK_FILE) -e '.[dev]'
	@touch $@

# A fresh venv in a temporary folder, `pip install -e '.[dev]'` with pyproject.toml's ranges only,
# then every installed version except the project and pip itself. Downloads every dependency
# (~6 GB with torch's CUDA wheels on Linux). `make install` then installs the new versions.
lock: ## regenerate requirements.lock from a clean install of pyproject.toml's dependencies
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	echo "lock: clean venv in $$tmp with $(PYTHON_FOR_VENV)"; \
	$(PYTHON_FOR_VENV) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install --quiet -e '.[dev]'; \
	{ printf '%s\n' \
	    "# requirements.lock: the exact version of every package that \`pip install -e '.[dev]'\` installs" \
	    "# (the project itself left out). pip constraints, used by \`make install\`" \
	    "# (pip install -c requirements.lock -e '.[dev]'), environment.yml and workflow/envs/unidad.yaml." \
	    "# Refresh: \`make lock\` (a fresh venv, \`pip install -e '.[dev]'\`, then" \
	    "# \`pip freeze --all --exclude-editable\` without pip itself). Edit pyproject.toml's ranges, never this file." \
	    "#" \
	    "# This version: made by \`make lock\` on $$(uname -s) $$(uname -m), $$("$$tmp/venv/bin/python" -V), $$(date -u +%F)." \
	    "# Lines for packages of another platform (torch's nvidia-*, cuda-* and triton wheels on Linux) are" \
	    "# ignored by pip where that platform does not install them."; \
	  "$$tmp/venv/bin/python" -m pip freeze --all --exclude-editable | grep -v '^pip=='; } > "$$tmp/lock"; \
	mv "$$tmp/lock" $(LOCK_FILE); \
	echo "lock: wrote $(LOCK_FILE) ($$(grep -c '==' $(LOCK_FILE)) packages); run make install to use it"

DEMO_REPORT := results/demo/report.html
# The text-conditioned (SDP) half of the demo: its own benchmark folder and report.
SDP_DEMO_CONFIG := config/sdp_demo.yaml
SDP_DEMO_REPORT := results/demo-sdp/report.html

demo: install ## run the embedded demo on this machine (FSIG: config/config.yaml, then SDP: config/sdp_demo.yaml), their reports and timings
	$(SNAKEMAKE) --profile profiles/local all
	$(SNAKEMAKE) --profile profiles/local all --configfile $(SDP_DEMO_CONFIG)
	$(SNAKEMAKE) --report $(DEMO_REPORT)
	$(SNAKEMAKE) --report $(SDP_DEMO_REPORT) --configfile $(SDP_DEMO_CONFIG)
	.venv/bin/unidad timing config/config.yaml
	.venv/bin/unidad timing $(SDP_DEMO_CONFIG)

test: install test-unit test-lint test-dry-run test-cluster ## everything CI checks, in order
	@if [ -z "$$(cat $(SKIPS_DIR)/* 2>/dev/null)" ]; then echo "make test: all steps passed"; exit 0; fi; \
	echo "###################################################################"; \
	echo "### make test: all steps passed, but these checks were SKIPPED:"; \
	sed 's/^/###   /' $(SKIPS_DIR)/*; \
	echo "###################################################################"

test-unit: install ## pytest (offline)
	@echo "== pytest"
	@mkdir -p $(SKIPS_DIR) && rm -f $(SKIPS_DIR)/pytest
	@# tests/conftest.py writes the skipped tests and their reasons to UNIDAD_SKIPS_FILE.
	@# Exit status 5 means pytest collected no tests: a broken suite, not a pass.
	@UNIDAD_SKIPS_FILE=$(SKIPS_DIR)/pytest $(PYTEST) -q || { status=$$?; \
	    if [ $$status -eq 5 ]; then echo "pytest collected no tests; failing." >&2; fi; \
	    exit $$status; }

test-lint: install ## snakemake --lint (fails on any lint)
	@echo "== snakemake --lint"
	$(SNAKEMAKE) --lint

# Two at a time (the machines have 2 cores and a dry run is one Python process); each run's output is
# kept in DRY_RUN_LOGS and printed when it fails.
DRY_RUN_JOBS ?= 2
DRY_RUN_LOGS := .dry-runs

test-dry-run: install ## snakemake -n for every config/*.yaml under the local and slurm profiles
	@test -n "$(CONFIGS)" || { echo "no config/*.yaml to dry-run" >&2; exit 1; }
	@rm -rf $(DRY_RUN_LOGS) && mkdir -p $(DRY_RUN_LOGS)
	@for config in $(CONFIGS); do for profile in $(DRY_RUN_PROFILES); do echo "$$config $$profile"; done; done \
	    | xargs -P $(DRY_RUN_JOBS) -L 1 bash -c 'log=$(DRY_RUN_LOGS)/$$(basename $$0 .yaml)-$$1.log; \
	        if $(SNAKEMAKE) all --dry-run --quiet host rules --profile profiles/$$1 --configfile $$0 >$$log 2>&1; \
	        then echo "== dry run ok: $$0 with profiles/$$1"; \
	        else cat $$log; echo "== dry run FAILED: $$0 with profiles/$$1 (log: $$log)"; exit 1; fi'

# Not root: the SLURM checks are skipped, and `make test` says so in its last word.
define skip_unless_root
	@mkdir -p $(SKIPS_DIR) && rm -f $(SKIPS_DIR)/$(1)
	@if [ "$$(id -u)" -ne 0 ]; then \
	    echo "### SKIPPED: $(2) needs root to start SLURM (run 'sudo make $(1)', or let CI run it)."; \
	    echo "make $(1): $(2) needs root to start SLURM (run 'sudo make $(1)', or let CI run it)" > $(SKIPS_DIR)/$(1); \
	    exit 0; \
	fi
endef

# The commands run_together starts at once: one SLURM smoke run per SMOKE_CONFIGS entry (named after it).
SMOKE_RUNS = $(foreach c,$(SMOKE_CONFIGS),$(basename $(notdir $(c)))='$(MAKE) --no-print-directory smoke-run SMOKE_CONFIG=$(c)')
PREEMPTION_CHECK = $(PYTHON) ci/slurm/check_preemption.py --snakemake $(SNAKEMAKE) --workdir $(PREEMPT_DIR)

smoke-run: install ## one SLURM smoke run: SMOKE_CONFIG through profiles/slurm-ci into $(SMOKE_ROOT)/<config name>, then the job check
	@test -n "$(SMOKE_CONFIG)" || { echo "smoke-run needs SMOKE_CONFIG=config/<name>.yaml" >&2; exit 1; }
	@# It runs in the checkout (config paths stay valid); only results_dir moves to its smoke dir.
	@dir=$(SMOKE_ROOT)/$$(basename $(SMOKE_CONFIG) .yaml); \
	echo "== SLURM smoke run: $(SMOKE_CONFIG) with profiles/slurm-ci in $$dir"; \
	rm -rf $$dir && mkdir -p $$dir; \
	$(SNAKEMAKE) all --profile profiles/slurm-ci --slurm-logdir $$dir/logs/slurm \
	    --configfile $(SMOKE_CONFIG) --config results_dir=$$dir/results </dev/null 2>&1 | tee $$dir/snakemake.log; \
	python3 ci/slurm/check_jobs_went_through_slurm.py $$dir/snakemake.log $$dir/logs/slurm

test-slurm: install ## the SLURM smoke runs of SMOKE_CONFIGS (FSIG, SDP) at once, then a preemption check; starts SLURM if needed
	$(call skip_unless_root,test-slurm,the SLURM smoke run)
	bash ci/slurm/start_slurm.sh
	python3 ci/run_together.py --log-dir $(SMOKE_ROOT)/together $(SMOKE_RUNS)
	@echo "== SLURM preemption check: scancel --signal=USR1 a running training job; it must resume to the same weights"
	$(PREEMPTION_CHECK)

# What CI runs on its SLURM node: the smoke runs and both rehearsals queued at once (ci/run_together.py:
# one DAG's jobs fill the node while another waits for its status poll), then the preemption check.
test-cluster: install ## every SLURM check at once: smoke runs, `make rehearsal`, `make rehearsal-sdp`; then the preemption check
	$(call skip_unless_root,test-cluster,the SLURM smoke runs and rehearsals)
	bash ci/slurm/start_slurm.sh
	python3 ci/run_together.py --log-dir $(SMOKE_ROOT)/together $(SMOKE_RUNS) \
	    rehearsal='$(MAKE) --no-print-directory rehearsal' rehearsal-sdp='$(MAKE) --no-print-directory rehearsal-sdp'
	@echo "== SLURM preemption check: scancel --signal=USR1 a running training job; it must resume to the same weights"
	$(PREEMPTION_CHECK)
	@echo "SLURM is still running; stop it with: make slurm-stop"

rehearsal-prepare: install ## stand-in weights and staged folders for the rehearsal (unidad.rehearsal), in .rehearsal/
	rm -rf $(REHEARSAL_STAGE)/weights $(REHEARSAL_STAGE)/data/fsig
	$(PYTHON) ci/rehearsal/make_standins.py --config $(REHEARSAL_CONFIG) --weights-dir $(REHEARSAL_STAGE)/weights \
	    --ffhq $(REHEARSAL_FFHQ) --full $(REHEARSAL_FULL)

# The stand-ins are found through UNIDAD_WEIGHTS_DIR, exported to this recipe only (SLURM jobs inherit
# it): any other config run with that folder refuses them.
rehearsal: rehearsal-prepare ## the paper DAG end to end on stand-in weights: through SLURM when root, else locally; each job's peak memory
	rm -rf $(REHEARSAL_DIR) && mkdir -p $(REHEARSAL_DIR)
	@start=$$(date +%s); export UNIDAD_WEIGHTS_DIR=$(CURDIR)/$(REHEARSAL_STAGE)/weights; \
	if [ "$$(id -u)" -eq 0 ]; then \
	    echo "== rehearsal through SLURM: $(REHEARSAL_CONFIG) with profiles/slurm-ci in $(REHEARSAL_DIR)"; \
	    bash ci/slurm/start_slurm.sh; \
	    $(SNAKEMAKE) all --profile profiles/slurm-ci --slurm-logdir $(REHEARSAL_DIR)/logs/slurm \
	        --configfile $(REHEARSAL_CONFIG) --config results_dir=$(REHEARSAL_DIR)/results \
	        </dev/null 2>&1 | tee $(REHEARSAL_DIR)/snakemake.log; \
	    python3 ci/slurm/check_jobs_went_through_slurm.py $(REHEARSAL_DIR)/snakemake.log $(REHEARSAL_DIR)/logs/slurm; \
	else \
	    echo "== rehearsal on this machine (not root: no SLURM): $(REHEARSAL_CONFIG) in $(REHEARSAL_DIR)"; \
	    $(SNAKEMAKE) all --profile profiles/local --configfile $(REHEARSAL_CONFIG) \
	        --config results_dir=$(REHEARSAL_DIR)/results </dev/null 2>&1 | tee $(REHEARSAL_DIR)/snakemake.log; \
	fi; \
	echo "== rehearsal: every job's peak memory (Snakemake benchmark files)"; \
	python3 ci/rehearsal/peak_memory.py $(REHEARSAL_DIR)/results; \
	grep -q "STAND-IN" $(REHEARSAL_DIR)/results/*/tables/compiled/paper_comparison.md \
	    || { echo "rehearsal: the paper comparison is not stamped STAND-IN" >&2; exit 1; }; \
	echo "rehearsal: done in $$(( $$(date +%s) - start )) s"

test-rehearsal: install ## `make rehearsal` and `make rehearsal-sdp` through SLURM, at once (root only, as test-slurm)
	$(call skip_unless_root,test-rehearsal,the SLURM rehearsal)
	bash ci/slurm/start_slurm.sh
	python3 ci/run_together.py --log-dir $(SMOKE_ROOT)/together \
	    rehearsal='$(MAKE) --no-print-directory rehearsal' rehearsal-sdp='$(MAKE) --no-print-directory rehearsal-sdp'

rehearsal-sdp-prepare: install ## stand-in weights and DreamBench folders for the SDP rehearsal, in .rehearsal/
	rm -rf $(REHEARSAL_SDP_WEIGHTS) $(REHEARSAL_STAGE)/data/dreambench
	$(PYTHON) ci/rehearsal/make_standins.py --config $(REHEARSAL_SDP_CONFIG) --weights-dir $(REHEARSAL_SDP_WEIGHTS)

# Through SLURM when root, else locally, as `make rehearsal`. Every compiled table (the SDP paper
# comparison among them) must be stamped STAND-IN. The export job writes
# weights/dmd2_sd15_1step.safetensors into the working tree, as in a real run: a stand-in export there
# is removed before and after (a real one stops it).
rehearsal-sdp: rehearsal-sdp-prepare ## the SDP paper DAG end to end on stand-in weights: through SLURM when root, else locally; each job's peak memory
	rm -rf $(REHEARSAL_SDP_DIR) && mkdir -p $(REHEARSAL_SDP_DIR)
	$(PYTHON) ci/rehearsal/clear_exports.py --config $(REHEARSAL_SDP_CONFIG)
	@start=$$(date +%s); export UNIDAD_WEIGHTS_DIR=$(CURDIR)/$(REHEARSAL_SDP_WEIGHTS); \
	if [ "$$(id -u)" -eq 0 ]; then \
	    echo "== SDP rehearsal through SLURM: $(REHEARSAL_SDP_CONFIG) with profiles/slurm-ci in $(REHEARSAL_SDP_DIR)"; \
	    bash ci/slurm/start_slurm.sh; \
	    where="--profile profiles/slurm-ci --slurm-logdir $(REHEARSAL_SDP_DIR)/logs/slurm"; \
	else \
	    echo "== SDP rehearsal on this machine (not root: no SLURM): $(REHEARSAL_SDP_CONFIG) in $(REHEARSAL_SDP_DIR)"; \
	    where="--profile profiles/local"; \
	fi; \
	status=0; { $(SNAKEMAKE) all $$where --configfile $(REHEARSAL_SDP_CONFIG) \
	    --config results_dir=$(REHEARSAL_SDP_DIR)/results </dev/null 2>&1 | tee $(REHEARSAL_SDP_DIR)/snakemake.log; } \
	    || status=$$?; \
	$(PYTHON) ci/rehearsal/clear_exports.py --config $(REHEARSAL_SDP_CONFIG); \
	[ $$status -eq 0 ] || { echo "SDP rehearsal: the DAG failed (log: $(REHEARSAL_SDP_DIR)/snakemake.log)" >&2; exit $$status; }; \
	if [ "$$(id -u)" -eq 0 ]; then \
	    python3 ci/slurm/check_jobs_went_through_slurm.py $(REHEARSAL_SDP_DIR)/snakemake.log $(REHEARSAL_SDP_DIR)/logs/slurm; \
	fi; \
	echo "== SDP rehearsal: every job's peak memory (Snakemake benchmark files)"; \
	python3 ci/rehearsal/peak_memory.py $(REHEARSAL_SDP_DIR)/results; \
	for table in $(REHEARSAL_SDP_DIR)/results/*/tables/compiled/*.md; do \
	    grep -q "STAND-IN" "$$table" || { echo "SDP rehearsal: $$table is not stamped STAND-IN" >&2; exit 1; }; \
	done; \
	echo "SDP rehearsal: done in $$(( $$(date +%s) - start )) s"

slurm-start: ## start the single-node CI SLURM on this machine (root)
	bash ci/slurm/start_slurm.sh

slurm-stop: ## stop it again
	bash ci/slurm/stop_slurm.sh

report: install ## the demo's Snakemake reports again ($(DEMO_REPORT), $(SDP_DEMO_REPORT)): every table and figure with captions
	$(SNAKEMAKE) --report $(DEMO_REPORT)
	$(SNAKEMAKE) --report $(SDP_DEMO_REPORT) --configfile $(SDP_DEMO_CONFIG)

clean-results: ## delete workflow outputs: results/ (keeps its README.md), logs/, the SLURM smoke, preemption and rehearsal runs
	if [ -d results ]; then find results -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +; fi
	rm -rf logs $(foreach c,$(SMOKE_CONFIGS),$(SMOKE_ROOT)/$(basename $(notdir $(c)))) $(PREEMPT_DIR) $(REHEARSAL_DIR) $(REHEARSAL_SDP_DIR) $(REHEARSAL_STAGE)
