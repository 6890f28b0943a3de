#!/usr/bin/env bash
# Build the pinned Go test tools that the HTTP/2 and gRPC tests drive against a live proxy:
#   h2spec  (github.com/summerwind/h2spec)  RFC 9113 conformance cases, tests/proxy/http2/test_h2spec.py
#   grpcurl (github.com/fullstorydev/grpcurl) a real gRPC client with reflection/proto files
# from the Go module proxy into ~/.cache/tollway/tools/bin (outside git), as
# tollway/devcluster/build.sh and tollway/control/local/jaeger_build.sh do for their binaries.
# Each binary is built only when missing or stamped with another pinned version, so a warm cache
# costs nothing. Run by .ci/run before the tests; tests that need a tool fail (not skip) with a
# sentence naming this script when the binary is missing.
#
# Why two wrapper modules: h2spec's last release predates Go modules (v2.2.1+incompatible has no
# go.mod), so its dependencies would float to whatever is newest; its wrapper pins each of them.
# grpcurl has a go.mod of its own and is built with `go install ...@version`, which follows it
# exactly. No upstream code is vendored into this repository.
#
# Usage: build.sh            build what is missing, printing each step and its elapsed time
#        build.sh --bin-dir  print the bin folder and exit
set -euo pipefail

H2SPEC_VERSION=v2.2.1+incompatible
# h2spec's imports, pinned (it has no go.mod to pin them): the versions this build was checked with.
H2SPEC_DEPS=(
  golang.org/x/net@v0.63.0 golang.org/x/text@v0.44.0 golang.org/x/sys@v0.50.0
  github.com/spf13/cobra@v1.10.2 github.com/spf13/pflag@v1.0.9
  github.com/fatih/color@v1.19.0 github.com/mattn/go-colorable@v0.1.14
  github.com/mattn/go-isatty@v0.0.20 github.com/inconshreveable/mousetrap@v1.1.0
)
GRPCURL_VERSION=v1.9.4

CACHE_ROOT=${TOLLWAY_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tollway/tools}
BIN=$CACHE_ROOT/bin
if [ "${1:-}" = "--bin-dir" ]; then echo "$BIN"; exit 0; fi

# The toolchain, the lock on the cache folder, `needs`/`stamp` and the build steps, shared with
# the other Go build scripts.
# shellcheck source-path=SCRIPTDIR source=../../tollway/gobuild.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../tollway/gobuild.sh"
gobuild_start tests/tools/build.sh "$CACHE_ROOT"

if needs h2spec "$H2SPEC_VERSION"; then
  W=$CACHE_ROOT/src/h2spec
  go_wrapper "$W" tollway.local/h2specbuild
  step "h2spec $H2SPEC_VERSION: resolving modules"
  (cd "$W" && go get -tool "github.com/summerwind/h2spec/cmd/h2spec@$H2SPEC_VERSION" "${H2SPEC_DEPS[@]}")
  go_build_tool h2spec "$H2SPEC_VERSION" "$W" github.com/summerwind/h2spec/cmd/h2spec \
    -ldflags "-s -w -X main.VERSION=${H2SPEC_VERSION%%+*} -X main.COMMIT=module-proxy"
fi

if needs grpcurl "$GRPCURL_VERSION"; then
  go_install grpcurl "$GRPCURL_VERSION" github.com/fullstorydev/grpcurl/cmd/grpcurl \
    -ldflags "-s -w -X main.version=$GRPCURL_VERSION"
fi

step "h2spec and grpcurl present in $BIN"
