#!/usr/bin/env bash
# Installs the pinned Schemathesis (from PyPI) into a virtualenv outside the repository, once.
# Prints the path of its executable. Used by the fuzz test layer (test/fuzz).
set -euo pipefail
VERSION="${SCHEMATHESIS_VERSION:-4.32.5}"
# Same cache rule as scripts/temporal.sh.
CACHE="${OUTRIDER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/outrider}"
VENV="$CACHE/schemathesis-$VERSION"
if [[ ! -x "$VENV/bin/schemathesis" ]]; then
  mkdir -p "$CACHE"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION" >&2
fi
echo "$VENV/bin/schemathesis"
