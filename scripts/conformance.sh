#!/usr/bin/env bash
# Autobahn|Testsuite against Staywire: the fuzzing client against the server's raw echo
# endpoint, and its fuzzing server against the Python client's connection layer (both run
# the same framing code). Writes docs/conformance.md and docs/conformance-client.md.
# wstest is Python 2 code: it runs in a Python 2.7 virtualenv made from pyenv's 2.7.18.
# Exits 0 with a notice when no Python 2.7 is available; non-zero when a case FAILED.
set -euo pipefail
cd "$(dirname "$0")/.."
ENV=.venv-autobahn
CASES="${CONFORMANCE_CASES:-1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*}"
PY27=""
if command -v pyenv >/dev/null 2>&1 && [ -x "$(pyenv root)/versions/2.7.18/bin/python2.7" ]; then
  PY27="$(pyenv root)/versions/2.7.18/bin/python2.7"
elif command -v python2.7 >/dev/null 2>&1; then
  PY27="$(command -v python2.7)"
fi
if [ -z "$PY27" ]; then
  echo "conformance: no Python 2.7 on this machine; the Autobahn run is skipped"
  exit 0
fi
if [ ! -x "$ENV/bin/wstest" ]; then
  echo "conformance: creating $ENV (about a minute)"
  .venv/bin/python -m pip install -q 'virtualenv<20.22' >/dev/null
  .venv/bin/python -m virtualenv -q -p "$PY27" "$ENV"
  # Its sdist declares no dependencies: these pins are known to work together.
  PIP_CONSTRAINT= "$ENV/bin/pip" install -q --no-cache-dir \
    setuptools==44.0.0 txaio==2.1.0 incremental==16.10.1 pyOpenSSL==19.1.0 \
    cryptography==3.3.2 Twisted==19.10.0 zope.interface==4.6.0 jinja2==2.11.3 \
    markupsafe==1.1.1 Werkzeug==1.0.1 klein==17.10.0 service_identity==18.1.0 \
    unittest2==1.1.0 six==1.16.0 'autobahn[accelerate,twisted]==0.10.9' 2>&1 | grep -v -i "deprecat\|warning" || true
  PIP_CONSTRAINT= "$ENV/bin/pip" install -q --no-cache-dir --no-deps autobahntestsuite==25.10.1 2>&1 | grep -v -i "deprecat\|warning" || true
fi
status=0
.venv/bin/python scripts/conformance.py --wstest "$PWD/$ENV/bin/wstest" --cases "$CASES" \
  --out "${CONFORMANCE_OUT:-docs/conformance.md}" || status=1
.venv/bin/python scripts/conformance_client.py --wstest "$PWD/$ENV/bin/wstest" --cases "$CASES" \
  --out "${CONFORMANCE_CLIENT_OUT:-docs/conformance-client.md}" || status=1
exit $status
