# Sourced by the scripts that keep tools outside the repository (temporal.sh,
# install-schemathesis.sh): one rule for where they go, so they never end up in two places.
# OUTRIDER_CACHE_DIR wins; else the XDG cache home; else ~/.cache.
OUTRIDER_CACHE="${OUTRIDER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/outrider}"
