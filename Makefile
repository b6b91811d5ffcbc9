# vid2mp3: `make run` converts a video end to end on the local stack; `make test` runs the whole suite.
# Both do the set-up a fresh machine needs: `make run` (and `make up`) only what converting a video needs, `make test`
# (and every other target that runs tests or benchmarks) everything.

SHELL := /bin/bash
VENV := .local/venv
PY := $(VENV)/bin/python
VIDEO ?=
OUT ?=

.PHONY: help setup setup-run up down status logs test test-unit test-quick test-faults go-test run bench load fuzz lint schemas

help:
	@echo "make run [VIDEO=clip.mp4] [OUT=clip.mp3]  convert a video end to end (a generated sample without VIDEO)"
	@echo "make test                                  install, start the local stack, run the whole test suite"
	@echo "make test-unit                             the unit tests alone: no server needed, about 2 minutes"
	@echo "make setup (everything) | up | down | status | logs | bench | load | fuzz | lint | go-test | test-quick (no slow tests) | test-faults (only them)"

# Everything: what the stack needs, and what the tests and benchmarks need besides (Chromium, Jaeger, skaffold and the
# manifests' modules, the test packages).
setup:
	@stack/setup.sh all

# What the stack needs to convert a video, no more (stack/setup.sh says what): `make run` on a fresh machine.
setup-run:
	@stack/setup.sh run

# Starts Jaeger too when it is built (`make setup`); without it the functions make no traces.
up: setup-run
	@$(PY) -m stack up

down:
	@if [ -x $(PY) ]; then $(PY) -m stack down; else echo "nothing to stop (no .local/venv)"; fi

status:
	@$(PY) -m stack status

logs:
	@$(PY) -m stack logs

# The whole suite: the linters and the layering contract, the Go tests (the local FerretDB's, the manifests' admission
# checks), then Python's (the unit tests, then the manifests' and the stack's); the fault-injection and life-cycle
# tests (marked slow) run last.
test: setup up lint go-test
	@$(PY) -m pytest --run-slow --durations=30

# tests/unit mirrors the packages and client/tests the command: no server is started or needed.
test-unit: setup
	@$(PY) -m pytest tests/unit client/tests

test-quick: setup up go-test
	@$(PY) -m pytest

# stack/validation runs Knative's, eventing-rabbitmq's and the topology operator's admission checks on knative/ and
# rabbitmq-source/ (its first build takes minutes; later runs reuse Go's build cache).
go-test: setup
	@cd stack/ferretdb && PATH="$$PATH:/usr/local/go/bin" GOFLAGS=-mod=readonly go test ./...
	@cd stack/validation && PATH="$$PATH:/usr/local/go/bin" GOFLAGS=-mod=readonly go test ./...

test-faults: setup up
	@VID2MP3_CONVERTER_KILLS=10 $(PY) -m pytest -m slow --run-slow

run: up
	@VID2MP3_LOCAL_DIR=$(CURDIR)/.local $(VENV)/bin/vid2mp3 convert --local $(if $(VIDEO),"$(VIDEO)",--sample) $(if $(OUT),-o "$(OUT)")

bench: setup up
	@$(PY) -m bench

# 200 uploads by 20 users at once, then a 10-minute soak at 0.5 uploads/s (about 15 minutes in all; loopback only,
# stops by itself). LOAD_ARGS="--uploads 50 --soak-seconds 60" for a shorter run; bench/load.py has the options.
load: setup up
	@$(PY) -m bench.load $(LOAD_ARGS)

# schemathesis on the OpenAPI document, longer than in `make test` (50 examples an operation, 40 stateful steps, a
# new seed each time; about 2 minutes). FUZZ_EXAMPLES, FUZZ_STATEFUL_STEPS and FUZZ_SEED change it.
fuzz: setup up
	@FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-50} FUZZ_STATEFUL_STEPS=$${FUZZ_STATEFUL_STEPS:-40} \
		FUZZ_SEED=$${FUZZ_SEED:-$$RANDOM} $(PY) -m pytest tests/stack/test_openapi.py -k schemathesis

lint: setup
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/lint-imports
	@$(VENV)/bin/mypy

schemas: setup
	@$(PY) -m events.publish_schemas
