#!/usr/bin/env bash
# The seed's transcript on the embedded hub: pack, send, start with arguments, read the output.
# Starts `si hub start` in the background, runs the transcript for both counters, stops the hub.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
PORT="${PORT:-8000}"
export SI_API_URL="http://127.0.0.1:$PORT/api/v1"
export SI_SESSION_ID="demo-$$"

HUB_LOG="$(mktemp)"
si hub start --port "$PORT" 2>"$HUB_LOG" &
HUB=$!
trap 'kill -TERM $HUB 2>/dev/null; wait $HUB 2>/dev/null || true; rm -f "$HUB_LOG"' EXIT
for _ in $(seq 1 120); do
  si hub version >/dev/null 2>&1 && break
  if ! kill -0 $HUB 2>/dev/null; then
    echo "the embedded hub did not start:" >&2; cat "$HUB_LOG" >&2; exit 1
  fi
  sleep 0.25
done
echo "Embedded hub running at $SI_API_URL"

run() { printf '$ %s\n' "$*"; "$@"; }
for example in counter-js counter-py; do
  echo
  run si seq pack "examples/$example"
  run si seq send -
  run si seq start - 3000 10
  run si inst output -
done
