#!/usr/bin/env bash
# Installs the pinned Schemathesis (from PyPI) into a virtualenv outside the repository, once.
# Prints the path of its executable. Used by the fuzz test layer (test/fuzz).
set -euo pipefail
VERSION="${SCHEMATHESIS_VERSION:-4.32.5}"
source "$(dirname "${BASH_SOURCE[0]}")/cache-dir.sh"
VENV="$OUTRIDER_CACHE/schemathesis-$VERSION"
if [[ ! -x "$VENV/bin/schemathesis" ]]; then
  mkdir -p "$OUTRIDER_CACHE"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION" >&2
fi
echo "$VENV/bin/schemathesis"
