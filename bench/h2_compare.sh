#!/usr/bin/env bash
# bench/h2_compare.sh - HTTP/2 (h2c, prior knowledge) through Tollway's proxy beside nginx
# and HAProxy as h2 reverse proxies to the same HTTP/1.1 backend, in one run, with h2load;
# then the same three over HTTP/1.1 (h2load --h1), so the h2 ratios can be read against
# the HTTP/1.1 ones. Loopback, h2load and the backend on LOADGEN_CPU, each proxy alone on
# PROXY_CPU, one process each.
#
#   bash bench/h2_compare.sh        env: REQUESTS=30000 CONNS=16 STREAMS=10 LOADGEN_CPU=0
#                                        PROXY_CPU=1 PORT_BASE=18280 INSTALL=1 REPS=1 BASE=
# BASE=dir adds that source tree's Tollway as "base" to the same run (before/after of a
# change: e.g. `git worktree add /tmp/base main`, or a copy with its compiled .so files).
# REPS runs every target REPS times, interleaved; the ratios are of the medians. Each run
# is REQUESTS requests; besides req/s it reads the proxy's CPU time over the run (with
# nginx's worker) from /proc: "per core" ratios compare CPU per request, the figure a
# shared, loaded host disturbs least.
# Needs nghttp2-client (h2load), nginx and haproxy (apt-get with INSTALL=1, as root).
# It stops every process it started, by PID, on exit.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
REQUESTS="${REQUESTS:-30000}"; CONNS="${CONNS:-16}"; STREAMS="${STREAMS:-10}"
LOADGEN_CPU="${LOADGEN_CPU:-0}"; PROXY_CPU="${PROXY_CPU:-1}"; PORT_BASE="${PORT_BASE:-18280}"
INSTALL="${INSTALL:-1}"; REPS="${REPS:-1}"; BASE="${BASE:-}"
PY="${PY:-$ROOT/.venv/bin/python}"; [ -x "$PY" ] || PY="$(command -v python3)"
WORK="$(mktemp -d -t tollway-h2bench.XXXXXX)"
if [ "$INSTALL" = 1 ] && ! { command -v h2load && command -v nginx && command -v haproxy; } >/dev/null; then
  apt-get install -y -qq nghttp2-client nginx-light haproxy >/dev/null
fi
P_BACKEND=$PORT_BASE; P_NGINX=$((PORT_BASE+1)); P_HAPROXY=$((PORT_BASE+2)); P_TOLLWAY=$((PORT_BASE+3))
P_BASE=$((PORT_BASE+4))  # BASE's Tollway (h2 and HTTP/1.1 on one port, as every listener)
UPSTREAM="127.0.0.1:$P_BACKEND"
# shellcheck source=bench/proxy_compare/common.sh
. "$HERE/proxy_compare/common.sh"   # start, wait_port, cleanup on exit, the configurations
# nginx and HAProxy: HTTP/1.1 on PORT+10, h2c (prior knowledge) on PORT
nginx_backend_conf "$P_BACKEND" > "$WORK/backend.conf"
nginx_proxy_conf $((P_NGINX+10)) "$UPSTREAM" "$P_NGINX" > "$WORK/nginx-proxy.conf"
haproxy_cfg $((P_HAPROXY+10)) "$UPSTREAM" "$P_HAPROXY" > "$WORK/haproxy.cfg"
start "$LOADGEN_CPU" backend nginx -p "$WORK" -c "$WORK/backend.conf" -e "$WORK/backend-error.log"
start "$PROXY_CPU" nginx-proxy nginx -p "$WORK" -c "$WORK/nginx-proxy.conf" -e "$WORK/nginx-proxy-error.log"
start "$PROXY_CPU" haproxy haproxy -db -f "$WORK/haproxy.cfg"
tollway() {  # tollway NAME TREE PORT: that tree's proxy on the bench snapshot
  PYTHONPATH="$2" "$PY" "$2/bench/tollway_snapshot.py" --upstream "$UPSTREAM" --port "$3" \
    > "$WORK/$1.json"
  # run from TREE: `python -m` puts the working directory ahead of PYTHONPATH
  start "$PROXY_CPU" "$1" env -C "$2" PYTHONPATH="$2" "$PY" -m tollway.proxy \
    --config "$WORK/$1.json" --admin-port 0
}
tollway tollway "$ROOT" "$P_TOLLWAY"
TARGETS="nginx:$P_NGINX:$((P_NGINX+10)):$PID_nginx_proxy haproxy:$P_HAPROXY:$((P_HAPROXY+10)):$PID_haproxy"
TARGETS="$TARGETS tollway:$P_TOLLWAY:$P_TOLLWAY:$PID_tollway"
if [ -n "$BASE" ]; then
  tollway base "$BASE" "$P_BASE"
  TARGETS="$TARGETS base:$P_BASE:$P_BASE:$PID_base"
fi
for p in $P_BACKEND $P_NGINX $P_HAPROXY $P_TOLLWAY ${BASE:+$P_BASE}; do wait_port "$p"; done
echo "tollway: $(cd "$ROOT" && "$PY" -c 'import tollway.native as n; print(n.describe())')" \
  "${BASE:+; base: $BASE}" >&2

cpu_ticks() {  # utime + stime of PID and its children (nginx's worker), in clock ticks
  local t=0 p
  for p in "$1" $(descendants "$1"); do
    [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}
run() {  # name proto port pid -> "name proto req/s mean_latency cpu_us_per_req ..."
  # a fixed number of requests: the proxy's CPU over the run divided by exactly those
  local flags=(-c "$CONNS" -m "$STREAMS" -n "$REQUESTS")
  [ "$2" = h1 ] && flags=(--h1 -c "$CONNS" -n "$REQUESTS")
  local t0 t1 out rps lat ok failed cpu
  t0=$(cpu_ticks "$4")  # the proxy's CPU over the whole h2load run, per request answered
  out=$(taskset -c "$LOADGEN_CPU" h2load "${flags[@]}" "http://127.0.0.1:$3/" 2>&1)
  t1=$(cpu_ticks "$4")
  rps=$(awk '/^finished in/ {gsub(",","",$4); print $4}' <<<"$out")
  lat=$(awk '/^time for request:/ {print $6}' <<<"$out")
  ok=$(awk '/^requests:/ {print $8}' <<<"$out")
  failed=$(awk '/^requests:/ {print $10}' <<<"$out")
  cpu=$(awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v n="${ok:-0}" \
    'BEGIN { printf "%.1f", (n > 0) ? t * 1e6 / hz / n : 0 }')
  echo "$1 $2 $rps $lat $cpu succeeded=$ok failed=$failed"
}
{
  for _ in $(seq "$REPS"); do  # interleaved: rep 1 of every target and protocol, then rep 2...
    for proto in h2 h1; do
      for t in $TARGETS; do
        IFS=: read -r name h2port h1port pid <<<"$t"
        run "$name" "$proto" "$([ "$proto" = h2 ] && echo "$h2port" || echo "$h1port")" "$pid"
      done
    done
  done
} | tee "$WORK/results.txt"
"$PY" - "$WORK/results.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
runs: dict = {}
cpus: dict = {}
for r in rows:
    if r[2] not in ("", "-"):
        runs.setdefault((r[0], r[1]), []).append(float(r[2]))
        if float(r[4]) > 0:
            cpus.setdefault((r[0], r[1]), []).append(float(r[4]))
rps = {k: statistics.median(v) for k, v in runs.items()}
cpu = {k: statistics.median(v) for k, v in cpus.items()}
print("medians of", max(len(v) for v in runs.values()), "runs each; per core = 1e6 / (proxy CPU us per request)")
for proto in ("h2", "h1"):
    for ours in ("tollway", "base"):
        t = rps.get((ours, proto))
        if not t:
            continue
        for other in ("nginx", "haproxy"):
            o = rps.get((other, proto))
            if not o:
                continue
            line = f"{proto}: {ours}/{other} = {t / o:.2f} req/s ({t:.0f} vs {o:.0f})"
            tc, oc = cpu.get((ours, proto)), cpu.get((other, proto))
            if tc and oc:
                line += f", per core {oc / tc:.2f} ({tc:.0f} vs {oc:.0f} CPU us/req)"
            print(line)
PY
