# Every target installs what it needs first (once per machine, into a cached virtualenv
# outside the clone; see scripts/ensure_env.sh), then acts.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
ENSURE := scripts/ensure_env.sh
ARGS ?=
PYTEST_ARGS ?=
# The suite runs on two pytest-xdist workers (a file per worker): about 11 min instead of 17 on two
# cores, inside CI's 15. TEST_WORKERS=0 runs it serially in one process; TEST_WORKERS=N uses N.
TEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

.PHONY: help install smoke test test-fast lint format screenshots bench lift console

help:
	@echo "make smoke        install if needed, then run the headless smoke job (learner + actor)"
	@echo "                  ARGS=\"--resume\" continues the newest run under outputs/smoke"
	@echo "make install      create/refresh the cached venv (dependencies + the dev and libero extras)"
	@echo "make test         install if needed, then run the whole test suite (2 workers; TEST_WORKERS=0: serially)"
	@echo "make test-fast    the suite without end-to-end tests marked slow"
	@echo "make console      open pirl-console"
	@echo "make screenshots  regenerate screenshots/*.svg"
	@echo "make bench        run benchmarks/ (prints figures and ratios; not the hour-long lift, its tools or the gradient control)"
	@echo "make lift         demos -> SFT -> eval -> RL -> eval on LIBERO (~1 h on 2 cores; ARGS for flags)"
	@echo "make lint         ruff check + ruff format --check"

install:
	@$(ENSURE) >/dev/null

smoke:
	@venv=$$($(ENSURE)); MUJOCO_GL=$${MUJOCO_GL:-egl} $$venv/bin/python -m pirl_core.launch --profile smoke $(ARGS)

test:
	@venv=$$($(ENSURE)); MUJOCO_GL=$${MUJOCO_GL:-egl} $$venv/bin/python -m pytest $(XDIST) $(PYTEST_ARGS)

test-fast:
	@venv=$$($(ENSURE)); MUJOCO_GL=$${MUJOCO_GL:-egl} $$venv/bin/python -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

console:
	@venv=$$($(ENSURE)); $$venv/bin/pirl-console $(ARGS)

screenshots:
	@venv=$$($(ENSURE)); $$venv/bin/python -m tools.screenshots screenshots

bench:
	@venv=$$($(ENSURE)); for b in benchmarks/*.py; do case $$b in benchmarks/libero_lift*|benchmarks/gradient_control*) continue;; esac; \
		echo "== $$b"; $$venv/bin/python $$b; done

lift:
	@venv=$$($(ENSURE)); MUJOCO_GL=$${MUJOCO_GL:-egl} $$venv/bin/python benchmarks/libero_lift.py $(ARGS)

lint:
	@venv=$$($(ENSURE)); $$venv/bin/ruff check . && $$venv/bin/ruff format --check .

format:
	@venv=$$($(ENSURE)); $$venv/bin/ruff format . && $$venv/bin/ruff check --fix .
