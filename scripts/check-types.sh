#!/usr/bin/env bash
# The browser client's types: its JavaScript checked through its JSDoc (strict), a consumer
# written against staywire.d.ts, and staywire.d.ts against the declarations TypeScript
# derives from the JavaScript (js/types/agree.ts). TypeScript comes pinned from js/package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/../js"
if [ ! -x node_modules/.bin/tsc ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
tsc=node_modules/.bin/tsc
$tsc -p tsconfig.json
rm -rf .types
$tsc -p tsconfig.declarations.json
$tsc -p types/tsconfig.json
echo "types: static/*.js, staywire.d.ts and the JavaScript agree"
