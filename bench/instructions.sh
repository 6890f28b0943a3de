#!/usr/bin/env bash
# bench/instructions.sh - instructions per proxied request under callgrind: a figure that
# does not move with the host's load (wall-clock ratios do), for before/after comparisons.
#
#   bash bench/instructions.sh [N1 N2]        (default 2000 6000)
#   SCRIPT=h2_hot_path.py bash bench/instructions.sh 1000 3000    (the HTTP/2 downstream)
#
# bench/hot_path.py (and h2_hot_path.py, same shape; ARGS=... adds its options) runs a 2000-request warm-up and then 3 timed runs of --n requests, so
# I(N) = start-up + (2000 + 3N) x per-request: per request = (I(N2) - I(N1)) / (3 (N2 - N1)),
# which cancels start-up and imports. Prints which build ran (compiled or pure Python:
# TOLLWAY_PURE=1 forces pure). Needs valgrind (apt-get install valgrind).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
N1="${1:-2000}"; N2="${2:-6000}"; SCRIPT="${SCRIPT:-hot_path.py}"; ARGS="${ARGS:-}"
OUT="$(mktemp -d -t tollway-cg.XXXXXX)"
trap 'rm -rf "$OUT"' EXIT
count() {
  valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.$1" "$PY" "$HERE/$SCRIPT" --n "$1" $ARGS \
    >"$OUT/log.$1" 2>&1
  sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$OUT/log.$1"
}
I1="$(count "$N1")"; I2="$(count "$N2")"
BUILD="$("$PY" -c 'import tollway.native as n; print(n.describe())' 2>/dev/null || echo "pure Python (no tollway.native)")"
echo "build: $BUILD; script: $SCRIPT $ARGS"
echo "I($N1)=$I1 I($N2)=$I2"
echo "$(( (I2 - I1) / (3 * (N2 - N1)) )) instructions per proxied request"
