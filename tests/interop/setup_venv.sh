#!/usr/bin/env bash
# setup_venv.sh DIR [extra pip specs...]
#
# Idempotently create a Python venv at DIR holding the CCCC 0.4.32 reference
# daemon (cccc-pair) and the official client SDK (cccc-sdk), plus any extra
# pip specs given. Quiet on success (only pip's own errors reach stderr);
# non-zero exit on failure. Safe to call concurrently (flock on DIR.lock).
#
# The marker file DIR/.ok lists the installed specs (one per line, sorted);
# when it matches the wanted list and DIR/bin/python exists, nothing is done.
# Env: PYTHON = interpreter used to create the venv (default python3.11, else python3).
set -euo pipefail

if [ $# -lt 1 ] || [ -z "${1:-}" ]; then
  echo "usage: $0 DIR [extra pip specs...]" >&2
  exit 2
fi
DIR=$1
shift
SPECS=("cccc-pair==0.4.32" "cccc-sdk==0.4.32" "$@")

WANT=$(printf '%s\n' "${SPECS[@]}" | LC_ALL=C sort -u)

is_ok() {
  [ -x "$DIR/bin/python" ] && [ -f "$DIR/.ok" ] && [ "$(cat "$DIR/.ok")" = "$WANT" ]
}

# Fast path without taking the lock.
if is_ok; then
  exit 0
fi

mkdir -p "$(dirname "$DIR")"
exec 9>"$DIR.lock"
if ! flock -w 900 9; then
  echo "setup_venv: timed out waiting for lock $DIR.lock" >&2
  exit 1
fi

# Re-check under the lock (another process may have finished meanwhile).
if is_ok; then
  exit 0
fi

rm -f "$DIR/.ok"
if [ ! -x "$DIR/bin/python" ]; then
  PY=${PYTHON:-}
  if [ -z "$PY" ]; then
    if command -v python3.11 >/dev/null 2>&1; then PY=python3.11; else PY=python3; fi
  fi
  "$PY" -m venv --clear "$DIR" >/dev/null || { echo "setup_venv: venv creation failed ($PY)" >&2; exit 1; }
fi

"$DIR/bin/python" -m pip install -q --disable-pip-version-check --no-input "${SPECS[@]}" >/dev/null \
  || { echo "setup_venv: pip install failed: ${SPECS[*]}" >&2; exit 1; }

# Verify the pinned versions really are what is importable.
"$DIR/bin/python" - <<'PY' || { echo "setup_venv: verification failed" >&2; exit 1; }
from importlib.metadata import version
import cccc, cccc_sdk  # noqa: F401
assert version("cccc-pair") == "0.4.32", version("cccc-pair")
assert version("cccc-sdk") == "0.4.32", version("cccc-sdk")
PY

printf '%s\n' "$WANT" > "$DIR/.ok.tmp"
mv -f "$DIR/.ok.tmp" "$DIR/.ok"
