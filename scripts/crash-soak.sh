#!/bin/sh
# Runs the crash soak (test/e2e/crash-soak.test.ts) with many SIGKILLs and
# prints its summary as JSON.
# Usage: scripts/crash-soak.sh [KILLS]   (default 100, about 1.5 s per kill)
# CRASH_SOAK_OBJECTS (default 20 per kill, at least 200) and CRASH_SOAK_SEED
# are passed to the test. A failing run prints its seed, so it can be repeated.
set -eu
cd "$(dirname "$0")/.."

kills="${1:-100}"
objects="${CRASH_SOAK_OBJECTS:-$((kills * 20))}"
if [ "$objects" -lt 200 ]; then objects=200; fi
summary="$(mktemp)"
trap 'rm -f "$summary"' EXIT

npm run build --silent
status=0
CRASH_SOAK_KILLS="$kills" CRASH_SOAK_OBJECTS="$objects" CRASH_SOAK_SUMMARY="$summary" \
  npx tap --disable-coverage --timeout 7200 --reporter terse test/e2e/crash-soak.test.ts || status=$?
if [ -s "$summary" ]; then cat "$summary"; else echo "crash-soak: no summary: the test stopped before its checks" >&2; fi
exit "$status"
