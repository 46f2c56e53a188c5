#!/usr/bin/env bash
# Installs Debian's Chromium for the browser test layer (test/browser), when it is missing.
#
#   bash scripts/install-chromium.sh
#
# Idempotent: does nothing when /usr/bin/chromium is already there. Runs
# `apt-get update` only when apt has no candidate for the package (package lists missing or
# stale), then `apt-get install`. Needs root, or sudo without a password.
# --no-install-recommends keeps out upower, notification-daemon and the like; fonts-liberation is
# asked for explicitly so that screenshots have readable text.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
PACKAGES=(chromium fonts-liberation)

if [ -x "$CHROMIUM" ]; then
  echo "chromium: already installed ($CHROMIUM)"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo -n)
else
  echo "chromium: $CHROMIUM is missing and this is not root (no sudo either); install the 'chromium' package" >&2
  exit 1
fi

has_candidate() {
  local candidate
  candidate="$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }')"
  [ -n "$candidate" ] && [ "$candidate" != "(none)" ]
}

export DEBIAN_FRONTEND=noninteractive
need_update=0
for package in "${PACKAGES[@]}"; do
  has_candidate "$package" || need_update=1
done
if [ "$need_update" -eq 1 ]; then
  echo "chromium: refreshing apt package lists"
  "${SUDO[@]}" apt-get update
fi

echo "chromium: installing ${PACKAGES[*]}"
if ! "${SUDO[@]}" apt-get install -y --no-install-recommends "${PACKAGES[@]}"; then
  # The lists may name versions the mirror no longer has (404): refresh once and try again.
  echo "chromium: install failed; refreshing apt package lists and retrying"
  "${SUDO[@]}" apt-get update
  "${SUDO[@]}" apt-get install -y --no-install-recommends "${PACKAGES[@]}"
fi

if [ ! -x "$CHROMIUM" ]; then
  echo "chromium: installed, but $CHROMIUM is still missing" >&2
  exit 1
fi
"$CHROMIUM" --version || true
