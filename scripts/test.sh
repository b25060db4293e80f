#!/usr/bin/env bash
# scripts/test.sh — HiveMind's test command (README and CI run exactly this):
#
#   bash scripts/test.sh [extra pytest args]
#
# Assumes scripts/setup.sh has been run (system packages + .venv). It:
#   1. starts the services the tests need (scripts/services.sh start — a no-op
#      when they already run) and builds the local job images if missing
#      (scripts/build_images.sh — a ~2 s smoke test when present),
#   2. exports where the tests find them:
#        HIVEMIND_TEST_PG_URL    = postgresql+psycopg://hivemind:hivemind@127.0.0.1:5432/hivemind_test
#        HIVEMIND_TEST_REDIS_URL = redis://127.0.0.1:6379/15
#   3. runs, in the venv: ruff check, ruff format --check, mypy (configured in
#      pyproject.toml), pytest -q.
# All checks run even when an earlier one fails, so one run reports every
# problem; the exit status is non-zero if any failed. pytest's exit code 5
# ("no tests collected") counts as a failure.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
VENV=$REPO/.venv

log() { printf '[test %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

[ -x "$VENV/bin/python" ] || { log "ERROR: $VENV missing: run 'sudo bash scripts/setup.sh' first"; exit 1; }

# --- services and images ------------------------------------------------------
bash scripts/services.sh start >/dev/null
if [ "${HIVEMIND_SKIP_IMAGES:-0}" != 1 ]; then
    bash scripts/build_images.sh
fi
export HIVEMIND_TEST_PG_URL=${HIVEMIND_TEST_PG_URL:-postgresql+psycopg://hivemind:hivemind@127.0.0.1:5432/hivemind_test}
export HIVEMIND_TEST_REDIS_URL=${HIVEMIND_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}

# --- checks -------------------------------------------------------------------
export PATH="$VENV/bin:$PATH"
failed=()

# run NAME CMD...: run a check, remember a failure, keep going.
run() {
    local name=$1; shift
    local start=$SECONDS rc=0
    log "==> $name: $*"
    "$@" || rc=$?
    if [ "$rc" -eq 0 ]; then
        log "<== $name: ok ($((SECONDS - start))s)"
    else
        log "<== $name: FAILED with exit code $rc ($((SECONDS - start))s)"
        [ "$name" = pytest ] && [ "$rc" -eq 5 ] && log "    (pytest exit code 5: no tests were collected — that is a failure here)"
        failed+=("$name")
    fi
    return 0
}

run "ruff check" ruff check .
run "ruff format" ruff format --check .
run "mypy" mypy
run "pytest" pytest -q "$@"

if [ ${#failed[@]} -gt 0 ]; then
    log "FAILED: ${failed[*]}"
    exit 1
fi
log "all checks passed"
