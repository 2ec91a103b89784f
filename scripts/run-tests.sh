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
echo "== Python tests (pytest)"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@" || status=1
exit $status
