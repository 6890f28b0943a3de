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

# The toolchain, the lock on the cache folder, `needs`/`stamp` and the build steps, shared with
# the other Go build scripts.
# shellcheck source-path=SCRIPTDIR source=../../gobuild.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../gobuild.sh"
gobuild_start "jaeger build.sh" "$CACHE"

if needs jaeger "$JAEGER_VERSION"; then
  W=$CACHE/src/wrapper
  go_wrapper "$W" tollway.local/jaegerbuild
  step "jaeger $JAEGER_VERSION: resolving modules (first time: a large download)"
  (cd "$W" && go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION")
  go_build_tool jaeger "$JAEGER_VERSION" "$W" github.com/jaegertracing/jaeger/cmd/jaeger -ldflags "-s -w"
fi
step "jaeger present in $BIN"
