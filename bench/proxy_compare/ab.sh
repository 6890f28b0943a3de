#!/usr/bin/env bash
# bench/proxy_compare/ab.sh - A/B of two Tollway source trees (e.g. HEAD vs the working
# tree) through the same harness, in one run, interleaved: the way to tell whether a
# change to the proxy's hot path pays, on a host too noisy for absolute numbers.
#
#   git worktree add /tmp/tollway-base HEAD        # the "before" tree (read-only use)
#   BASE=/tmp/tollway-base bash bench/proxy_compare/ab.sh
#
# Starts an nginx backend (return 200, 100-byte body) beside wrk on LOADGEN_CPU and, on
# PROXY_CPU, HAProxy (C, the reference of the issue's ratios; A is the backend direct,
# the base of added latency) and, for each tree, the
# bench's Tollway shapes: T (90/10 split, outlier detection, Istio metrics), with
# VARIANTS=all also T-mir (100% mirror) and T-100 (100 routes, 20 clusters). Targets run
# interleaved (runner.py: rep 1 of every target, then rep 2, ...). Read CPU us/req: it is
# CPU time of the proxy process per request, the least sensitive figure to other load.
#
#   env: BASE=dir (required) NEW=dir (default: this tree) DURATION=5 REPS=5 MODES=sat
#        VARIANTS=t|all CONNS=50 PORT_BASE=18280 LOADGEN_CPU=0 PROXY_CPU=1 OUT=dir
# It stops every process it started, by PID, on exit.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BASE="${BASE:?set BASE to the before tree, e.g. a git worktree of HEAD}"
NEW="${NEW:-$ROOT}"
DURATION="${DURATION:-5}"; REPS="${REPS:-5}"; MODES="${MODES:-sat}"; VARIANTS="${VARIANTS:-t}"
CONNS="${CONNS:-50}"; PORT_BASE="${PORT_BASE:-18280}"
LOADGEN_CPU="${LOADGEN_CPU:-0}"; PROXY_CPU="${PROXY_CPU:-1}"
WORK="$(mktemp -d -t tollway-ab.XXXXXX)"
OUT="${OUT:-$WORK/out}"; mkdir -p "$OUT"
PY="${PY:-$ROOT/.venv/bin/python}"; [ -x "$PY" ] || PY="$(command -v python3)"
P_BACKEND=$PORT_BASE; P_HAPROXY=$((PORT_BASE+1))
UPSTREAM="127.0.0.1:$P_BACKEND"
log() { printf '[ab] %s\n' "$*" >&2; }
for c in nginx haproxy wrk taskset curl; do
  command -v "$c" >/dev/null || { log "missing $c (bash bench/run.sh installs it)"; exit 1; }
done

# shellcheck source=bench/proxy_compare/common.sh
. "$HERE/common.sh"   # start, wait_port, cleanup on exit, the nginx/HAProxy configurations
nginx_backend_conf "$P_BACKEND" > "$WORK/backend.conf"
haproxy_cfg "$P_HAPROXY" "$UPSTREAM" > "$WORK/haproxy.cfg"

start "$LOADGEN_CPU" backend nginx -p "$WORK" -c "$WORK/backend.conf" -e "$WORK/backend-error.log"
PID_backend=$LAST_PID
start "$PROXY_CPU" haproxy haproxy -db -f "$WORK/haproxy.cfg"
PID_haproxy=$LAST_PID
wait_port $P_BACKEND; wait_port $P_HAPROXY

shapes=("T:")
[ "$VARIANTS" = all ] && shapes+=("T-mir:--mirror" "T-100:--routes 100 --clusters 20")
TARGETS="[{\"id\": \"A\", \"name\": \"direct: nginx backend (load core)\", \"url\": \"http://127.0.0.1:$P_BACKEND/\", \"pid\": $PID_backend}"
TARGETS="$TARGETS, {\"id\": \"C\", \"name\": \"HAProxy\", \"url\": \"http://127.0.0.1:$P_HAPROXY/\", \"pid\": $PID_haproxy}"
port=$((PORT_BASE+2))
for shape in "${shapes[@]}"; do
  id="${shape%%:*}"; args="${shape#*:}"
  for tree in base new; do
    dir=$BASE; [ $tree = new ] && dir=$NEW
    # shellcheck disable=SC2086
    (cd "$dir" && PYTHONPATH="$dir" "$PY" bench/tollway_snapshot.py --upstream "$UPSTREAM" \
      --port $port $args > "$WORK/$id-$tree.json")
    (cd "$dir" && PYTHONPATH="$dir" exec taskset -c "$PROXY_CPU" "$PY" -m tollway.proxy \
      --config "$WORK/$id-$tree.json" --admin-port 0 >"$WORK/$id-$tree.log" 2>&1) &
    LAST_PID=$!; PIDS+=("$LAST_PID")
    wait_port $port
    TARGETS="$TARGETS, {\"id\": \"$id-$tree\", \"name\": \"$id ($dir)\", \"url\": \"http://127.0.0.1:$port/\", \"pid\": $LAST_PID}"
    port=$((port+1))
  done
done
echo "$TARGETS]" > "$WORK/targets.json"
log "work dir $WORK; base=$BASE new=$NEW modes=$MODES reps=$REPS duration=${DURATION}s"
"$PY" "$ROOT/bench/proxy_compare/runner.py" --targets "$WORK/targets.json" \
  --out "$OUT/results.json" --reps "$REPS" --duration "$DURATION" --modes "$MODES" \
  --conns "$CONNS" --loadgen-cpu "$LOADGEN_CPU" --proxy-cpu "$PROXY_CPU" \
  --wrk-script "$HERE/report.lua" > "$OUT/table.md"
cat "$OUT/table.md"
"$PY" - "$OUT/results.json" <<'PY'
import json, statistics, sys
res = json.load(open(sys.argv[1]))["results"]
def med(tid, mode, key):
    v = [r[key] for r in res if r["id"] == tid and r["mode"] == mode and r.get(key) is not None]
    return statistics.median(v) if v else None
ids = sorted({r["id"] for r in res if r["id"].endswith("-base")})
for mode in sorted({r["mode"] for r in res}):
    c = med("C", mode, "cpu_us_per_req")
    print(f"\n{mode}: CPU us/req (median), HAProxy {c:.1f}")
    a50, a90 = med("A", mode, "p50_us"), med("A", mode, "p90_us")
    c50, c90 = med("C", mode, "p50_us") - a50, med("C", mode, "p90_us") - a90
    print(f"  added latency p50/p90 (vs direct A): HAProxy +{c50:.0f}/+{c90:.0f} us")
    for b in ids:
        n = b[:-5] + "-new"
        cb, cn = med(b, mode, "cpu_us_per_req"), med(n, mode, "cpu_us_per_req")
        rb, rn = med(b, mode, "rss_mb"), med(n, mode, "rss_mb")
        print(f"  {b[:-5]:6} base {cb:6.1f}  new {cn:6.1f}  new/base {cn / cb:.3f}  "
              f"HAProxy/new {c / cn:.2f}x  new/HAProxy {cn / c:.2f}x  "
              f"RSS {rb:.1f} -> {rn:.1f} MB")
        for t in (b, n):
            t50, t90 = med(t, mode, "p50_us") - a50, med(t, mode, "p90_us") - a90
            print(f"         {t[-4:]:>4}: added p50/p90 +{t50:.0f}/+{t90:.0f} us "
                  f"({t50 / c50:.2f}x / {t90 / c90:.2f}x HAProxy)")
PY
