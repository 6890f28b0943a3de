# bench/proxy_compare/common.sh - the set-up bench/run.sh, bench/h2_compare.sh and
# bench/proxy_compare/ab.sh share (sourced, not run): starting processes pinned to a CPU
# and stopping every one of them (and their children) by PID on exit, waiting for a port,
# and the configurations of the nginx backend (return 200, 100-byte body), the nginx
# reverse proxy and HAProxy, all three as the issue's comparisons set them up.
#
# The caller sets WORK (a scratch directory) before sourcing; PIDS collects what start()
# started, and the EXIT trap set here stops it all.

PIDS=()
BODY="$(printf '0123456789%.0s' $(seq 9))abcdefghi"

descendants() { local k; for k in $(pgrep -P "$1" 2>/dev/null || true); do echo "$k"; descendants "$k"; done; }
cleanup() {  # TERM to everything started (children too), KILL what is left after 5 s
  local all=() p
  for p in "${PIDS[@]}"; do all+=("$p" $(descendants "$p")); done
  [ ${#all[@]} -gt 0 ] || return 0
  kill -TERM "${all[@]}" 2>/dev/null || true
  for _ in $(seq 50); do
    local alive=0; for p in "${all[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break; sleep 0.1
  done
  for p in "${all[@]}"; do kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

LAST_PID=0
start() {  # start CPU NAME CMD...  -> LAST_PID and PID_<NAME> (dashes as underscores)
  local cpu=$1 name=$2; shift 2
  taskset -c "$cpu" "$@" >"$WORK/$name.log" 2>&1 &
  LAST_PID=$!; PIDS+=("$LAST_PID"); eval "PID_${name//-/_}=$LAST_PID"
}
wait_port() {  # something accepts connections on 127.0.0.1:PORT (HTTP/1.1 or h2c-only)
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  printf 'nothing answers on port %s; logs in %s\n' "$1" "$WORK" >&2; exit 1
}

nginx_head() {  # nginx_head NAME: the part every nginx configuration here shares
  cat <<CONF
worker_processes 1;
daemon off;
pid $WORK/$1.pid;
error_log $WORK/$1-error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $WORK/$1-t1; proxy_temp_path $WORK/$1-t2; fastcgi_temp_path $WORK/$1-t3;
  uwsgi_temp_path $WORK/$1-t4; scgi_temp_path $WORK/$1-t5;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
CONF
}
nginx_backend_conf() {  # nginx_backend_conf PORT: answers 200 with the 100-byte body
  nginx_head backend
  cat <<CONF
  server {
    listen 127.0.0.1:$1 backlog=4096;
    location / { default_type text/plain; return 200 "$BODY\n"; }
  }
}
CONF
}
nginx_proxy_conf() {  # nginx_proxy_conf PORT UPSTREAM [H2PORT]: HTTP/1.1 on PORT, h2c on H2PORT
  nginx_head nginx-proxy
  cat <<CONF
  upstream backend { server $2; keepalive 128; keepalive_requests 10000000; keepalive_timeout 300s; }
  server {
    listen 127.0.0.1:$1 backlog=4096;
    ${3:+listen 127.0.0.1:$3 http2 backlog=4096; http2_max_concurrent_streams 128;}
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$remote_addr;
    }
  }
}
CONF
}
haproxy_cfg() {  # haproxy_cfg PORT UPSTREAM [H2PORT]: HTTP/1.1 on PORT, h2c on H2PORT
  cat <<CONF
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
  option http-keep-alive
  option forwardfor
  http-reuse always
frontend fe
  bind 127.0.0.1:$1 backlog 4096
  ${3:+bind 127.0.0.1:$3 proto h2 backlog 4096}
  default_backend be
backend be
  server s1 $2
CONF
}
