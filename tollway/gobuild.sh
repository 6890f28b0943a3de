# shellcheck shell=bash
# Sourced, never run, by the scripts that build pinned upstream Go programs from the Go module
# proxy into a cache folder outside git: tollway/devcluster/build.sh (the dev cluster's binaries
# and Helm), tollway/control/local/jaeger_build.sh (Jaeger) and tests/tools/build.sh (h2spec,
# grpcurl). They share one way of building, kept here so it cannot drift between them:
# - the toolchain: Go from PATH or the tarball's /usr/local/go/bin (sudo resets PATH), never a
#   toolchain fetched silently (GOTOOLCHAIN=local), at most 2 packages at once (2 shared cores),
#   compiles under nice; CGO off so the binaries are static;
# - one builder at a time per cache folder (flock): a second `up` or CI run waits, not races;
# - version pinning: bin/NAME is rebuilt only when missing or stamped bin/.NAME.version with
#   another version, so a warm cache costs nothing; a binary is written as NAME.tmp and renamed,
#   then stamped, so an interrupted build never leaves a stamped half-binary;
# - progress as `build: [Ns] ...` lines (tollway/devcluster/build.py and control/local/jaeger.py
#   show them and read nothing else).
# It lives in the package (package data) so the shipped scripts reach it beside them; the
# tests' script reaches it through the checkout.

# gobuild_start WHO DIR: ready to build into $BIN (the caller's bin folder), holding DIR's lock.
# WHO begins the one sentence said when Go is missing (exit 2). Creates $BIN and DIR/src (the
# scratch folder of wrapper modules and `go install`), takes DIR/.build.lock on descriptor 9 for
# the rest of the run, and starts the clock that `step` reports.
gobuild_start() {
  local who=$1 dir=$2
  export CGO_ENABLED=0
  export GOTOOLCHAIN=${GOTOOLCHAIN:-local}   # Go 1.26 satisfies every pinned go.mod; never fetch one silently
  export GOFLAGS="-p=2 ${GOFLAGS:-}"          # 2 shared cores: one link at a time per package set
  NICE=(nice -n 10)
  if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then PATH=$PATH:/usr/local/go/bin; fi
  if ! command -v go >/dev/null; then
    echo "$who: the Go toolchain is not on PATH; install Go >= 1.24 (e.g. /usr/local/go/bin) and retry." >&2
    exit 2
  fi
  GOBUILD_SRC=$dir/src
  mkdir -p "$BIN" "$GOBUILD_SRC"
  exec 9>"$dir/.build.lock"
  if ! flock -n 9; then
    echo "build: another build holds $dir/.build.lock; waiting for it"
    flock 9
  fi
  START=$(date +%s)
}

step() { echo "build: [$(( $(date +%s) - START ))s] $*"; }

# needs NAME VERSION: true when bin/NAME is missing or stamped with another version.
needs() { [ ! -x "$BIN/$1" ] || [ "$(cat "$BIN/.$1.version" 2>/dev/null)" != "$2" ]; }
stamp() { echo "$2" > "$BIN/.$1.version"; }

# go_wrapper DIR MODULE [REQUIRE]: a fresh throwaway module in DIR (go.sum dropped, so the next
# `go get -tool` resolves anew). Upstream modules whose go.mod has replace directives refuse
# `go install ...@version`; a module that requires them builds the same code.
go_wrapper() {
  mkdir -p "$1"
  {
    echo "module $2"
    echo
    echo "go 1.24.0"
    if [ -n "${3:-}" ]; then echo; echo "require $3"; fi
  } > "$1/go.mod"
  rm -f "$1/go.sum"
}

# go_build_tool NAME VERSION DIR PKG [go build flags...]: compile PKG, a tool of the wrapper
# module in DIR, into bin/NAME stamped VERSION.
go_build_tool() {
  local name=$1 version=$2 dir=$3 pkg=$4
  shift 4
  step "$name $version: compiling"
  (cd "$dir" && "${NICE[@]}" go build -trimpath "$@" -o "$BIN/$name.tmp" "$pkg")
  mv "$BIN/$name.tmp" "$BIN/$name"; stamp "$name" "$version"
  step "$name $version: done"
}

# go_install NAME VERSION PKG [go install flags...]: `go install PKG@VERSION` (for modules whose
# go.mod follows as published) into bin/NAME stamped VERSION.
go_install() {
  local name=$1 version=$2 pkg=$3
  shift 3
  step "$name $version: resolving and compiling"
  local gobin=$GOBUILD_SRC/$name-bin
  mkdir -p "$gobin"
  (cd "$GOBUILD_SRC" && GOBIN=$gobin "${NICE[@]}" go install -trimpath "$@" "$pkg@$version")
  mv "$gobin/$name" "$BIN/$name"; stamp "$name" "$version"
  step "$name $version: done"
}
