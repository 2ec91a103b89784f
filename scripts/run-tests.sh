#!/usr/bin/env bash
# Runs the whole suite: JS unit tests (node --test), static checks, then pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
if [ -d js/test ] && command -v node >/dev/null 2>&1; then
  echo "== JS unit tests (node --test)"
  node --test js/test/ || status=1
  echo "== Browser client types (tsc: JSDoc, staywire.d.ts)"
  bash scripts/check-types.sh || status=1
fi
echo "== Static checks (import circles; ruff; mypy --strict on src/ and bench/src/)"
.venv/bin/python scripts/check_imports.py src/staywire bench/src/staywire_bench || status=1
.venv/bin/ruff check src tests scripts bench/src || status=1
.venv/bin/mypy src/staywire bench/src/staywire_bench || status=1
# pytest-xdist: one worker per core, at most 4 (each test starts its own servers, so more
# workers than cores only queue for the CPU); STAYWIRE_TEST_WORKERS=0 runs in one process.
# loadfile keeps each file on one worker, so a module's fixtures (a built wheel, a Django
# project, a Sentinel group) start once, and tests/browser's Chromium once per worker.
# --no-loadscope-reorder: files go out in collection order, which tests/conftest.py starts
# with the slow ones (xdist's own order, most tests first, left the one-test Autobahn run
# and soak for last, with one worker idle while the other ran them).
workers="${STAYWIRE_TEST_WORKERS:-$(nproc 2>/dev/null || echo 2)}"
[ "$workers" -gt 4 ] && workers=4
echo "== Python tests (pytest, $workers workers)"
.venv/bin/python -m pytest -q -p no:cacheprovider -n "$workers" --dist loadfile --no-loadscope-reorder "$@" || status=1
exit $status
