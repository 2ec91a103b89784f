#!/usr/bin/env bash
# Runs the whole suite: the JS unit tests on Node's test runner, then pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
if [ -d js/test ] && command -v node >/dev/null 2>&1; then
  echo "== JS unit tests (node --test)"
  node --test js/test/ || status=1
fi
echo "== Python tests (pytest)"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@" || status=1
exit $status
