#!/usr/bin/env bash
# Installs the browser test's npm packages (playwright-core, which drives Debian's chromium) into
# tests/browser/node_modules, exactly as tests/browser/package-lock.json pins them. Does nothing
# when they are there already.
set -euo pipefail
cd "$(dirname "$0")/../tests/browser"

installed_version() {
  node -p "require('./node_modules/playwright-core/package.json').version" 2>/dev/null || true
}
locked_version=$(node -p "require('./package-lock.json').packages['node_modules/playwright-core'].version")
if [ "$(installed_version)" = "$locked_version" ]; then
  exit 0
fi
echo "installing playwright-core $locked_version into tests/browser/node_modules"
npm ci --no-audit --no-fund --loglevel=error
