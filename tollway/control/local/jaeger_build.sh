#!/usr/bin/env bash
# Build the pinned Jaeger all-in-one (the `jaeger` binary of Jaeger v2: collector with OTLP and
# Zipkin receivers, in-memory storage, query API/UI) from the Go module proxy into
# ~/.cache/tollway/jaeger/$JAEGER_VERSION/bin (outside git), like tollway/devcluster/build.sh
# builds the cluster binaries. Built only when missing or stamped with another version, so a
# warm cache costs nothing. Run by `tollway up --tracing` (control/local/jaeger.py, which
# reads JAEGER_VERSION below) and by .ci/run before the tests. Cold: ~11 min on 2 loaded cores.
#
# Why a wrapper module with `go get -tool`: `go install ...@version` refuses modules whose go.mod
# has replace directives; a throwaway module that requires the pinned Jaeger builds the same code.
# The wrapper lives in the cache folder; no upstream code is vendored into this repository.
#
# Usage: build.sh            build if missing, printing each step and its elapsed time
#        build.sh --bin-dir  print the bin folder and exit
set -euo pipefail

JAEGER_VERSION=v1.75.0   # github.com/jaegertracing/jaeger: the approved release on the module proxy

CACHE_ROOT=${TOLLWAY_JAEGER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tollway/jaeger}
CACHE=$CACHE_ROOT/$JAEGER_VERSION
BIN=$CACHE/bin
if [ "${1:-}" = "--bin-dir" ]; then echo "$BIN"; exit 0; fi

export CGO_ENABLED=0
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}   # never fetch a toolchain silently
export GOFLAGS="-p=2 ${GOFLAGS:-}"          # 2 shared cores
NICE=(nice -n 10)

if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then PATH=$PATH:/usr/local/go/bin; fi
if ! command -v go >/dev/null; then
  echo "jaeger build.sh: the Go toolchain is not on PATH; install Go >= 1.24 (e.g. /usr/local/go/bin) and retry." >&2
  exit 2
fi

mkdir -p "$BIN" "$CACHE/src"
exec 9>"$CACHE/.build.lock"
if ! flock -n 9; then
  echo "build: another build holds $CACHE/.build.lock; waiting for it"
  flock 9
fi

START=$(date +%s)
step() { echo "build: [$(( $(date +%s) - START ))s] $*"; }

if [ ! -x "$BIN/jaeger" ] || [ "$(cat "$BIN/.jaeger.version" 2>/dev/null)" != "$JAEGER_VERSION" ]; then
  W=$CACHE/src/wrapper; mkdir -p "$W"
  cat > "$W/go.mod" <<MOD
module tollway.local/jaegerbuild

go 1.24.0
MOD
  rm -f "$W/go.sum"
  step "jaeger $JAEGER_VERSION: resolving modules (first time: a large download)"
  (cd "$W" && go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION")
  step "jaeger $JAEGER_VERSION: compiling"
  (cd "$W" && "${NICE[@]}" go build -trimpath -ldflags "-s -w" -o "$BIN/jaeger.tmp" \
     github.com/jaegertracing/jaeger/cmd/jaeger)
  mv "$BIN/jaeger.tmp" "$BIN/jaeger"; echo "$JAEGER_VERSION" > "$BIN/.jaeger.version"
  step "jaeger $JAEGER_VERSION: done"
fi
step "jaeger present in $BIN"
