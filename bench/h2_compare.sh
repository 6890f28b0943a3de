#!/usr/bin/env bash
# bench/h2_compare.sh - HTTP/2 (h2c, prior knowledge) through Tollway's proxy beside nginx
# and HAProxy as h2 reverse proxies to the same HTTP/1.1 backend, in one run, with h2load;
# then the same three over HTTP/1.1 (h2load --h1), so the h2 ratios can be read against
# the HTTP/1.1 ones. Loopback, h2load and the backend on LOADGEN_CPU, each proxy alone on
# PROXY_CPU, one process each.
#
#   bash bench/h2_compare.sh        env: DURATION=10 CONNS=16 STREAMS=10 LOADGEN_CPU=0
#                                        PROXY_CPU=1 PORT_BASE=18280 INSTALL=1
# Needs nghttp2-client (h2load), nginx and haproxy (apt-get with INSTALL=1, as root).
# It stops every process it started, by PID, on exit.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
DURATION="${DURATION:-10}"; CONNS="${CONNS:-16}"; STREAMS="${STREAMS:-10}"
LOADGEN_CPU="${LOADGEN_CPU:-0}"; PROXY_CPU="${PROXY_CPU:-1}"; PORT_BASE="${PORT_BASE:-18280}"
INSTALL="${INSTALL:-1}"
PY="${PY:-$ROOT/.venv/bin/python}"; [ -x "$PY" ] || PY="$(command -v python3)"
WORK="$(mktemp -d -t tollway-h2bench.XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
if [ "$INSTALL" = 1 ] && ! { command -v h2load && command -v nginx && command -v haproxy; } >/dev/null; then
  apt-get install -y -qq nghttp2-client nginx-light haproxy >/dev/null
fi
P_BACKEND=$PORT_BASE; P_NGINX=$((PORT_BASE+1)); P_HAPROXY=$((PORT_BASE+2)); P_TOLLWAY=$((PORT_BASE+3))
wait_port() {
  for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "nothing answers on port $1; logs in $WORK" >&2; exit 1
}
BODY="$(printf '0123456789%.0s' $(seq 9))abcdefghi"
temps="client_body_temp_path $WORK/t1; proxy_temp_path $WORK/t2; fastcgi_temp_path $WORK/t3;
  uwsgi_temp_path $WORK/t4; scgi_temp_path $WORK/t5;"
cat > "$WORK/backend.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/backend.pid; error_log $WORK/backend.log warn;
events { worker_connections 8192; }
http { access_log off; $temps keepalive_requests 10000000; keepalive_timeout 300s;
  server { listen 127.0.0.1:$P_BACKEND backlog=4096;
    location / { default_type text/plain; return 200 "$BODY\n"; } } }
CONF
cat > "$WORK/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/nginx.pid; error_log $WORK/nginx.log warn;
events { worker_connections 8192; }
http { access_log off; $temps
  upstream be { server 127.0.0.1:$P_BACKEND; keepalive 64; }
  server { listen 127.0.0.1:$P_NGINX http2 backlog=4096; listen 127.0.0.1:$((P_NGINX+10)) backlog=4096;
    http2_max_concurrent_streams 128; keepalive_requests 10000000;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
cat > "$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  http-reuse always
frontend fe
  bind 127.0.0.1:$P_HAPROXY proto h2
  bind 127.0.0.1:$((P_HAPROXY+10))
  default_backend be
backend be
  server s1 127.0.0.1:$P_BACKEND
CONF
taskset -c "$LOADGEN_CPU" nginx -p "$WORK" -c "$WORK/backend.conf" -e "$WORK/backend.log" & PIDS+=($!)
taskset -c "$PROXY_CPU" nginx -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/nginx.log" & PIDS+=($!)
taskset -c "$PROXY_CPU" haproxy -db -f "$WORK/haproxy.cfg" & PIDS+=($!)
(cd "$ROOT" && PYTHONPATH="$ROOT" "$PY" bench/tollway_snapshot.py --upstream "127.0.0.1:$P_BACKEND" \
  --port "$P_TOLLWAY" > "$WORK/tollway.json")
(cd "$ROOT" && PYTHONPATH="$ROOT" exec taskset -c "$PROXY_CPU" "$PY" -m tollway.proxy \
  --config "$WORK/tollway.json" --admin-port 0 > "$WORK/tollway.log" 2>&1) & PIDS+=($!)
for p in $P_BACKEND $P_NGINX $P_HAPROXY $P_TOLLWAY; do wait_port "$p"; done

run() {  # name proto port -> "req/s mean_latency_ms"
  local flags=(-c "$CONNS" -m "$STREAMS" -D "$DURATION" --warm-up-time 2)
  [ "$2" = h1 ] && flags=(--h1 -c "$CONNS" -D "$DURATION" --warm-up-time 2)
  local out
  out=$(taskset -c "$LOADGEN_CPU" h2load "${flags[@]}" "http://127.0.0.1:$3/" 2>&1)
  local rps lat failed
  rps=$(awk '/^finished in/ {gsub(",","",$4); print $4}' <<<"$out")
  lat=$(awk '/^time for request:/ {print $6}' <<<"$out")
  ok=$(awk '/^requests:/ {print $8}' <<<"$out")
  failed=$(awk '/^requests:/ {print $10}' <<<"$out")
  echo "$1 $2 $rps $lat succeeded=$ok failed=$failed"
}
{
  for proto in h2 h1; do
    off=0; [ $proto = h1 ] && off=10
    run nginx $proto $((P_NGINX+off))
    run haproxy $proto $((P_HAPROXY+off))
    run tollway $proto $P_TOLLWAY
  done
} | tee "$WORK/results.txt"
"$PY" - "$WORK/results.txt" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
rps = {(r[0], r[1]): float(r[2]) for r in rows if r[2] not in ("", "-")}
for proto in ("h2", "h1"):
    t = rps.get(("tollway", proto))
    if not t:
        continue
    for other in ("nginx", "haproxy"):
        o = rps.get((other, proto))
        if o:
            print(f"{proto}: tollway/{other} = {t / o:.2f}  ({t:.0f} vs {o:.0f} req/s)")
PY
