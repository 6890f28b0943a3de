#!/usr/bin/env bash
# Build the pinned Kubernetes control plane, etcd and CoreDNS from the Go module proxy into
# ~/.cache/tollway/k8s/$K8S_VERSION/bin (outside git). Each binary is built only when it is
# missing or was built for another pinned version, so a warm cache costs nothing.
#
# Why a generated wrapper module: k8s.io/kubernetes' go.mod points every staging module at
# ./staging/..., so `go install k8s.io/kubernetes/cmd/...@v1.34.4` is refused. A module that
# requires k8s.io/kubernetes and replaces each staging module with its published v0.Y.Z tag
# builds the same code (docs: /work/shared/reference/local-kubernetes.md §1). The wrapper
# go.mod lives in the cache folder; no upstream code is ever vendored into this repository.
#
# Usage: build.sh            build what is missing, printing each step and its elapsed time
#        build.sh --bin-dir  print the bin folder and exit
set -euo pipefail

K8S_VERSION=v1.34.4          # kube-apiserver, -controller-manager, -scheduler, -proxy, kubectl
ETCD_VERSION=v3.6.16         # kubeadm pins etcd 3.6.x for Kubernetes 1.34
COREDNS_VERSION=v1.14.7
HELM_VERSION=v4.3.2          # Helm 4: helm.sh/helm/v4 has no replace directives, `go install` works

CACHE_ROOT=${TOLLWAY_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tollway/k8s}
CACHE=$CACHE_ROOT/$K8S_VERSION
BIN=$CACHE/bin
if [ "${1:-}" = "--bin-dir" ]; then echo "$BIN"; exit 0; fi

# The toolchain, the lock on the cache folder, `needs`/`stamp` and the build steps, shared with
# the other Go build scripts (sudo resets PATH: it also looks where the Go tarball installs).
# shellcheck source-path=SCRIPTDIR source=../gobuild.sh
source "$(dirname "${BASH_SOURCE[0]}")/../gobuild.sh"
gobuild_start build.sh "$CACHE"

# --- etcd: its server module replaces ../api, so it also needs a wrapper (etcd-io/etcd#18501).
if needs etcd "$ETCD_VERSION"; then
  step "etcd $ETCD_VERSION: resolving modules"
  W=$CACHE/src/etcd
  go_wrapper "$W" tollway.local/etcdbuild "go.etcd.io/etcd/server/v3 $ETCD_VERSION"
  (cd "$W" && go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION")
  go_build_tool etcd "$ETCD_VERSION" "$W" go.etcd.io/etcd/server/v3
fi

# --- Kubernetes: one wrapper module for all five binaries, sharing one compile cache.
K8S_BINS=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl)
k8s_missing=()
for b in "${K8S_BINS[@]}"; do needs "$b" "$K8S_VERSION" && k8s_missing+=("$b"); done
if [ ${#k8s_missing[@]} -gt 0 ]; then
  W=$CACHE/src/kubernetes; mkdir -p "$W"
  step "kubernetes $K8S_VERSION: reading k8s.io/kubernetes' go.mod for its staging modules"
  KMOD=$(cd "$W" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  STAGING_TAG=v0.${K8S_VERSION#v1.}
  GODEBUG_LINE=$(grep -E '^godebug ' "$KMOD" || true)
  GO_LINE=$(grep -E '^go [0-9]' "$KMOD")
  {
    echo "module tollway.local/k8sbuild"
    echo
    echo "$GO_LINE"
    echo
    # GODEBUG defaults follow the main module: copy k/k's line so TLS/x509 behave as upstream.
    [ -n "$GODEBUG_LINE" ] && echo "$GODEBUG_LINE" && echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$KMOD" | awk -v tag="$STAGING_TAG" '{print "\t" $1 " => " $1 " " tag}'
    echo ")"
  } > "$W/go.mod"
  rm -f "$W/go.sum"
  pkgs=()
  for b in "${k8s_missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  step "kubernetes $K8S_VERSION: resolving modules for ${k8s_missing[*]} (first time: a large download)"
  (cd "$W" && for p in "${pkgs[@]}"; do go get -tool "$p@$K8S_VERSION"; done)
  BUILD_DATE=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "${KMOD%.mod}.info")
  MINOR=${K8S_VERSION#v1.}; MINOR=${MINOR%%.*}
  LDFLAGS="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$MINOR"
    LDFLAGS+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$BUILD_DATE -X $pkg.gitCommit=module-proxy-$K8S_VERSION"
  done
  note=" (the first one compiles most of the shared packages)"
  for b in "${k8s_missing[@]}"; do
    step "kubernetes $K8S_VERSION: compiling $b$note"; note=""
    (cd "$W" && "${NICE[@]}" go build -trimpath -ldflags "$LDFLAGS" -o "$BIN/$b.tmp" "k8s.io/kubernetes/cmd/$b")
    mv "$BIN/$b.tmp" "$BIN/$b"; stamp "$b" "$K8S_VERSION"
    step "kubernetes $K8S_VERSION: $b done"
  done
fi

# --- CoreDNS: its go.mod has no replace directives, so `go install` works as published.
if needs coredns "$COREDNS_VERSION"; then
  go_install coredns "$COREDNS_VERSION" github.com/coredns/coredns -tags grpcnotrace \
    -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=module-proxy-$COREDNS_VERSION"
fi

# --- Helm, for the chart's tests (helm lint, template, install on the dev cluster).
if needs helm "$HELM_VERSION"; then
  go_install helm "$HELM_VERSION" helm.sh/helm/v4/cmd/helm \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
fi

step "all binaries present in $BIN"
