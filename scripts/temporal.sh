#!/usr/bin/env bash
# Installs (when missing) and starts the official Temporal CLI dev server on loopback.
#
#   scripts/temporal.sh install   build the pinned CLI from the Go module proxy into the cache
#   scripts/temporal.sh path      print the binary's path (installing it first if needed)
#   scripts/temporal.sh start     start `temporal server start-dev --headless` in the foreground
#
# Temporal's release downloads are not reachable from every build machine, but the Go module
# proxy is, so we build the CLI from source. v1.5.1 is pinned because its go.mod has no
# `replace` directives, which `go install pkg@version` refuses.
set -euo pipefail

TEMPORAL_CLI_VERSION="${TEMPORAL_CLI_VERSION:-v1.5.1}"
source "$(dirname "${BASH_SOURCE[0]}")/cache-dir.sh"
BIN_DIR="$OUTRIDER_CACHE/temporal-cli-$TEMPORAL_CLI_VERSION"
BIN="$BIN_DIR/temporal"

install_cli() {
  if [ -x "$BIN" ]; then return 0; fi
  if ! command -v go >/dev/null 2>&1; then
    echo "temporal.sh: Go is needed to build the Temporal CLI (apt-get install golang, or see go.dev)" >&2
    exit 1
  fi
  mkdir -p "$BIN_DIR"
  echo "temporal.sh: building Temporal CLI $TEMPORAL_CLI_VERSION into $BIN_DIR (first run only, a few minutes)" >&2
  GOBIN="$BIN_DIR" GOFLAGS="-trimpath" CGO_ENABLED=0 \
    go install "github.com/temporalio/cli/cmd/temporal@$TEMPORAL_CLI_VERSION" >&2
}

case "${1:-start}" in
  install) install_cli ;;
  path) install_cli; echo "$BIN" ;;
  start)
    install_cli
    shift || true
    # TEMPORAL_DB_FILENAME keeps state across restarts (the fault tests use it); without it the
    # dev server is in-memory.
    db_args=()
    if [ -n "${TEMPORAL_DB_FILENAME:-}" ]; then db_args=(--db-filename "$TEMPORAL_DB_FILENAME"); fi
    exec "$BIN" server start-dev --headless \
      --ip 127.0.0.1 \
      --port "${TEMPORAL_PORT:-7233}" \
      --http-port "${TEMPORAL_HTTP_PORT:-7243}" \
      --metrics-port "${TEMPORAL_METRICS_PORT:-7244}" \
      --log-level "${TEMPORAL_LOG_LEVEL:-warn}" \
      "${db_args[@]}" "$@"
    ;;
  *) echo "usage: scripts/temporal.sh [install|path|start]" >&2; exit 2 ;;
esac
