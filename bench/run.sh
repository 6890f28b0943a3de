#!/usr/bin/env bash
# bench/run.sh - Tollway's proxy beside nginx and HAProxy as reverse proxies to the same
# upstream, in one run, on this machine (loopback, 2 cores). Adapted from the shared
# harness ../shared/bench/proxy-compare.sh (method: ../shared/reference/local-limits.md).
#
#   A      wrk -> nginx backend (return 200, 100-byte body)            baseline for +pNN
#   B      wrk -> nginx reverse proxy (upstream keepalive)      -> backend
#   C      wrk -> HAProxy (keep-alive, http-reuse always)        -> backend
#   T      wrk -> tollway proxy: 90/10 split, outlier detection, Istio metrics, no access log
#   T-mir  wrk -> T plus a 100% mirror to a third cluster (same backend)
#   T-100  wrk -> T with 100 routes, 20 clusters, a regex route and an inbound listener
#          with an AuthorizationPolicy (the peak-RSS shape: RE2 loaded)
#   T-py   wrk -> T on the pure-Python build (TOLLWAY_PURE=1), when PURE=1 (the default):
#          what the compiled hot path (tollway/native.py) saves, in the same run
#   D      wrk -> the lean uvloop+httptools probe proxy of local-limits.md, only when
#          RAWPROXY (default ../shared/bench/proxy-compare/rawproxy.py) exists: a
#          reference for what a minimal Python data path costs in the same run
#
# wrk and the backend share LOADGEN_CPU; every proxy runs alone on PROXY_CPU, one process.
# Runs are interleaved and redone when hypervisor steal is high (runner.py). At the end
# bench/summary.py prints medians and the ratios the issue's targets are stated in.
#
# Usage: bash bench/run.sh      (or: python -m bench)
#   env: DURATION=10 REPS=3 MODES=sat,paced CONNS=50 PACED_CONNS=16 PACED_DELAY_MS=16
#        INSTALL=1 STEAL_MAX=10 RETRIES=2 PORT_BASE=18180 LOADGEN_CPU=0 PROXY_CPU=1 OUT=dir
#        PURE=1
# It stops every process it started, by PID, on exit. Needs root for apt-get.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
LIB="$HERE/proxy_compare"
DURATION="${DURATION:-10}"; REPS="${REPS:-3}"; MODES="${MODES:-sat,paced}"
CONNS="${CONNS:-50}"; PACED_CONNS="${PACED_CONNS:-16}"; PACED_DELAY_MS="${PACED_DELAY_MS:-16}"
INSTALL="${INSTALL:-1}"; STEAL_MAX="${STEAL_MAX:-10}"; RETRIES="${RETRIES:-2}"
PORT_BASE="${PORT_BASE:-18180}"; LOADGEN_CPU="${LOADGEN_CPU:-0}"; PROXY_CPU="${PROXY_CPU:-1}"
PURE="${PURE:-1}"
WORK="$(mktemp -d -t tollway-bench.XXXXXX)"
OUT="${OUT:-$WORK/out}"; mkdir -p "$OUT"
PY="${PY:-$ROOT/.venv/bin/python}"; [ -x "$PY" ] || PY="$(command -v python3)"

P_BACKEND=$PORT_BASE; P_NGINX=$((PORT_BASE+1)); P_HAPROXY=$((PORT_BASE+2))
P_T=$((PORT_BASE+3)); P_TMIR=$((PORT_BASE+4)); P_T100=$((PORT_BASE+5)); P_D=$((PORT_BASE+6))
P_TPY=$((PORT_BASE+7)); P_T100_IN=$((PORT_BASE+8))
RAWPROXY="${RAWPROXY:-$ROOT/../shared/bench/proxy-compare/rawproxy.py}"
UPSTREAM="127.0.0.1:$P_BACKEND"
log() { printf '[bench] %s\n' "$*" >&2; }

if [ "$INSTALL" = 1 ]; then
  need=()
  for c in nginx:nginx-light haproxy:haproxy wrk:wrk taskset:util-linux chrt:util-linux curl:curl; do
    command -v "${c%%:*}" >/dev/null 2>&1 || need+=("${c#*:}")
  done
  if [ ${#need[@]} -gt 0 ]; then
    log "apt-get install ${need[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
  fi
fi
for c in nginx haproxy wrk taskset chrt curl; do
  command -v "$c" >/dev/null || { log "missing $c (run with INSTALL=1)"; exit 1; }
done
for p in $P_BACKEND $P_NGINX $P_HAPROXY $P_T $P_TMIR $P_T100 $P_TPY $P_T100_IN; do
  if ss -Hltn "sport = :$p" | grep -q .; then log "port $p is taken; set PORT_BASE"; exit 1; fi
done

# shellcheck source=bench/proxy_compare/common.sh
. "$LIB/common.sh"   # start, wait_port, cleanup on exit, the nginx/HAProxy configurations
nginx_backend_conf "$P_BACKEND" > "$WORK/backend.conf"
nginx_proxy_conf "$P_NGINX" "$UPSTREAM" > "$WORK/nginx-proxy.conf"
haproxy_cfg "$P_HAPROXY" "$UPSTREAM" > "$WORK/haproxy.cfg"
snap() { "$PY" "$HERE/tollway_snapshot.py" --upstream "$UPSTREAM" "$@"; }
snap --port "$P_T" > "$WORK/t.json"
snap --port "$P_TMIR" --mirror > "$WORK/tmir.json"
snap --port "$P_T100" --routes 100 --clusters 20 --regex --authz "$P_T100_IN" > "$WORK/t100.json"
snap --port "$P_TPY" > "$WORK/tpy.json"

log "work dir $WORK; load on CPU $LOADGEN_CPU, proxies on CPU $PROXY_CPU"
start "$LOADGEN_CPU" backend nginx -p "$WORK" -c "$WORK/backend.conf" -e "$WORK/backend-error.log"
start "$PROXY_CPU" nginx-proxy nginx -p "$WORK" -c "$WORK/nginx-proxy.conf" -e "$WORK/nginx-proxy-error.log"
start "$PROXY_CPU" haproxy haproxy -db -f "$WORK/haproxy.cfg"
cd "$ROOT"
start "$PROXY_CPU" t "$PY" -m tollway.proxy --config "$WORK/t.json" --admin-port 0
start "$PROXY_CPU" tmir "$PY" -m tollway.proxy --config "$WORK/tmir.json" --admin-port 0
start "$PROXY_CPU" t100 "$PY" -m tollway.proxy --config "$WORK/t100.json" --admin-port 0
for p in $P_BACKEND $P_NGINX $P_HAPROXY $P_T $P_TMIR $P_T100; do wait_port $p; done
PY_ROW=""
if [ "$PURE" = 1 ]; then
  start "$PROXY_CPU" tpy env TOLLWAY_PURE=1 "$PY" -m tollway.proxy --config "$WORK/tpy.json" --admin-port 0
  wait_port $P_TPY
  PY_ROW=",
 {\"id\": \"T-py\", \"name\": \"T on the pure-Python build (TOLLWAY_PURE=1)\", \"url\": \"http://127.0.0.1:$P_TPY/\", \"pid\": $PID_tpy}"
fi
log "Tollway's hot path: $("$PY" -c 'import tollway.native as n; print(n.describe())')"
D_ROW=""
if [ -f "$RAWPROXY" ]; then
  start "$PROXY_CPU" rawproxy "$PY" "$RAWPROXY" --listen 127.0.0.1:$P_D --upstream "$UPSTREAM"
  wait_port $P_D
  D_ROW=" {\"id\": \"D\", \"name\": \"reference: lean uvloop+httptools probe (not Tollway)\", \"url\": \"http://127.0.0.1:$P_D/\", \"pid\": $PID_rawproxy},"
fi

cat > "$WORK/targets.json" <<JSON
[
 {"id": "A", "name": "direct: nginx backend (load core)", "url": "http://127.0.0.1:$P_BACKEND/", "pid": $PID_backend},
 {"id": "B", "name": "nginx reverse proxy", "url": "http://127.0.0.1:$P_NGINX/", "pid": $PID_nginx_proxy},
 {"id": "C", "name": "HAProxy", "url": "http://127.0.0.1:$P_HAPROXY/", "pid": $PID_haproxy},
$D_ROW
 {"id": "T", "name": "tollway proxy (90/10 split, outlier, Istio metrics)", "url": "http://127.0.0.1:$P_T/", "pid": $PID_t},
 {"id": "T-mir", "name": "T + 100% mirroring", "url": "http://127.0.0.1:$P_TMIR/", "pid": $PID_tmir},
 {"id": "T-100", "name": "T with 100 routes, 20 clusters, regex route, authz", "url": "http://127.0.0.1:$P_T100/", "pid": $PID_t100}$PY_ROW
]
JSON
log "running: modes=$MODES reps=$REPS duration=${DURATION}s"
"$PY" "$LIB/runner.py" --targets "$WORK/targets.json" --out "$OUT/results.json" --reps "$REPS" \
  --duration "$DURATION" --modes "$MODES" --conns "$CONNS" --paced-conns "$PACED_CONNS" \
  --paced-delay-ms "$PACED_DELAY_MS" --loadgen-cpu "$LOADGEN_CPU" --proxy-cpu "$PROXY_CPU" \
  --wrk-script "$LIB/report.lua" --steal-max "$STEAL_MAX" --retries "$RETRIES" > "$OUT/table.md"
cat "$OUT/table.md"
"$PY" "$HERE/summary.py" "$OUT/results.json" | tee "$OUT/summary.md"
{
  echo
  echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
  echo "versions: $(nginx -v 2>&1 | cut -d' ' -f3), $(haproxy -v | head -1 | cut -d' ' -f1-3), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $("$PY" -c 'import sys,uvloop,httptools; print("python", sys.version.split()[0], "uvloop", uvloop.__version__, "httptools", httptools.__version__)')"
} | tee -a "$OUT/summary.md"
log "results: $OUT/results.json, $OUT/table.md, $OUT/summary.md"
