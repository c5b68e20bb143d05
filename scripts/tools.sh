#!/usr/bin/env bash
# Installs the pinned deployment and test-cluster tools (helm, kustomize,
# kwok, kube-apiserver, kube-controller-manager, kube-scheduler and kubectl
# as one "kubernetes" tool, the real node's kubelet, containerd and runc, and
# the conformance suite's reference builder, buildkitd and buildctl as one
# "buildkit" tool, kaniko's executor as the "kaniko" tool for the
# benchmarks, and the test suites' own Go tools, e2e/tools)
# with the Go toolchain into a cache
# outside the repository, one directory per tool and version:
#
#   ${KILN_TOOLS_DIR:-$HOME/.cache/kiln/tools}/<name>-<version>/bin
#
# Idempotent: a tool whose binary is already there is not rebuilt, so a warm
# run takes milliseconds. Prints the bin directories joined by ':' on stdout,
# ready to prepend to PATH:
#
#   PATH="$(scripts/tools.sh):$PATH"
#
# Arguments name the tools to install (default: helm and kustomize, what
# check-deploy needs). Progress goes to stderr.
# Needs Go >= 1.24 (what these versions declare; BuildKit's module asks for
# 1.26, which go fetches as its toolchain when older) and the Go module
# proxy; a cold helm build takes a few minutes, a cold buildkit build two and
# a half, a cold kubernetes build far longer (all four binaries share one
# build, run under `nice`).
set -euo pipefail

HELM_VERSION=v3.19.5
KUSTOMIZE_VERSION=v5.8.1
# Minor of the k8s.io/* modules helm $HELM_VERSION is built with (its go.mod).
HELM_KUBE_MINOR=34
# The e2e control plane: the same minor as the k8s.io modules helm uses, so
# the module downloads are shared.
KUBERNETES_VERSION=v1.34.2
KWOK_VERSION=v0.7.0
# The e2e real node's runtime: user namespaces for pods (hostUsers: false)
# need containerd 2.0 and runc 1.2 or later; Debian 12 ships 1.6 and 1.1.
CONTAINERD_VERSION=v2.4.2
RUNC_VERSION=v1.5.3
# The conformance suite's first reference (e2e/conformance/README.md): the
# builder behind `docker build`. It runs its RUN steps with the runc above.
BUILDKIT_VERSION=v0.35.0
# The other peer of the benchmarks (bench/peers.sh): kaniko's executor,
# which kiln's flags follow.
KANIKO_VERSION=v1.24.0
# Clients that check what kiln attaches to images (issue 15): cosign
# verifies signatures and attestations, oras lists referrers.
COSIGN_VERSION=v2.6.5
ORAS_VERSION=v1.3.6

tools_dir=${KILN_TOOLS_DIR:-$HOME/.cache/kiln/tools}

# install <name> <version> <package> [go build flags...]
# More packages of the same module go in KILN_TOOL_PACKAGES (space
# separated, without the version), cgo in KILN_TOOL_CGO=1.
install_tool() {
  local name=$1 version=$2 package=$3
  shift 3
  local packages=("$package@$version") extra
  for extra in ${KILN_TOOL_PACKAGES:-}; do
    packages+=("$extra@$version")
  done
  local dir="$tools_dir/$name-$version"
  if [ -x "$dir/bin/$name" ]; then
    printf '%s\n' "$dir/bin"
    return 0
  fi
  command -v go >/dev/null 2>&1 || {
    echo "tools: go is not installed; it is needed to build $name $version" >&2
    return 1
  }
  echo "tools: building $name $version (go install $package@$version)" >&2
  mkdir -p "$tools_dir"
  # Build into a private directory and rename it into place, so a build that
  # is interrupted or runs concurrently never leaves a half-written binary
  # where the next run would take it for an installed one.
  local tmp
  tmp=$(mktemp -d "$tools_dir/.$name-$version.XXXXXX")
  local start=$SECONDS
  if ! GOBIN="$tmp/bin" GOFLAGS="${GOFLAGS:-} -trimpath" CGO_ENABLED="${KILN_TOOL_CGO:-0}" \
    nice -n 10 go install "$@" "${packages[@]}" >&2; then
    rm -rf "$tmp"
    echo "tools: building $name $version failed" >&2
    return 1
  fi
  if ! mv -T "$tmp" "$dir" 2>/dev/null; then
    # Another run installed the same version first; keep its copy.
    rm -rf "$tmp"
  fi
  echo "tools: $name $version built in $((SECONDS - start))s into $dir/bin" >&2
  printf '%s\n' "$dir/bin"
}

# The Kubernetes version variables `kubectl version`, the apiserver's
# /version and helm's capability checks read (as the upstream build stamps
# them).
kube_version_ldflags() {
  local version=$1 minor
  minor=${version#v1.}
  minor=${minor%%.*}
  local pkg flags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  printf '%s' "$flags"
}

# install_from_source <name> <version> <build function> <binaries...>: for
# what `go install` cannot build. Runs `<build function> <version> <out dir>
# <binaries...>` (which writes <out dir>/bin and may leave sources in
# <out dir>/src) in a private directory and renames it to
# $tools_dir/<name>-<version>, as install_tool does, so an interrupted or
# concurrent build never leaves a half-written tool behind.
install_from_source() {
  local name=$1 version=$2 build=$3
  shift 3
  local dir="$tools_dir/$name-$version"
  local complete=1 b
  for b in "$@"; do
    [ -x "$dir/bin/$b" ] || complete=0
  done
  if [ $complete -eq 1 ]; then
    printf '%s\n' "$dir/bin"
    return 0
  fi
  command -v go >/dev/null 2>&1 || {
    echo "tools: go is not installed; it is needed to build $name $version" >&2
    return 1
  }
  echo "tools: building $name $version ($*) from the Go module proxy" >&2
  mkdir -p "$tools_dir"
  local tmp
  tmp=$(mktemp -d "$tools_dir/.$name-$version.XXXXXX")
  local start=$SECONDS
  if ! "$build" "$version" "$tmp" "$@" >&2; then
    # Copies of module sources are read-only.
    chmod -R u+w "$tmp" 2>/dev/null || true
    rm -rf "$tmp"
    echo "tools: building $name $version failed" >&2
    return 1
  fi
  chmod -R u+w "$tmp/src" 2>/dev/null || true
  rm -rf "$tmp/src"
  if ! mv -T "$tmp" "$dir" 2>/dev/null; then
    rm -rf "$tmp"
  fi
  echo "tools: $name $version built in $((SECONDS - start))s into $dir/bin" >&2
  printf '%s\n' "$dir/bin"
}

# k8s.io/kubernetes is not `go install`able: its go.mod points every
# k8s.io/* staging module at a directory inside its own repository and
# requires them at v0.0.0. A throw-away wrapper module requires it and
# replaces each staging module with the published v0.<minor>.<patch> of the
# same release, then builds the commands from the module cache.
# install_kubernetes <tool name> <command names...>: the commands of
# k8s.io/kubernetes $KUBERNETES_VERSION into $tools_dir/<tool name>-<version>.
install_kubernetes() {
  local name=$1
  shift
  install_from_source "$name" "$KUBERNETES_VERSION" build_kubernetes "$@"
}

# build_kubernetes <version> <out dir> <command names...>
build_kubernetes() {
  local version=$1 out=$2
  shift 2
  local staging_version="v0.${version#v1.}"
  local src="$out/src"
  mkdir -p "$src" "$out/bin"
  local gomod
  gomod=$(cd "$src" && go mod download -json "k8s.io/kubernetes@$version" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [ -n "$gomod" ] && [ -f "$gomod" ] || {
    echo "tools: could not download k8s.io/kubernetes@$version from the Go module proxy" >&2
    return 1
  }
  local go_directive
  go_directive=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")
  {
    echo "module kiln.invalid/kubernetes-build"
    echo
    echo "go ${go_directive:-1.24.0}"
    echo
    echo "require k8s.io/kubernetes $version"
    echo
    echo "replace ("
    # Every `k8s.io/<name> => ./staging/src/k8s.io/<name>` of upstream's go.mod.
    sed -n 's|^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/.*$|\1|p' "$gomod" |
      while read -r module; do
        echo "	$module => $module $staging_version"
      done
    echo ")"
  } >"$src/go.mod"
  local packages=() b
  {
    echo "//go:build tools"
    echo
    echo "// Package tools pins the commands this module builds."
    echo "package tools"
    echo
    echo "import ("
    for b in "$@"; do
      echo "	_ \"k8s.io/kubernetes/cmd/$b\""
      packages+=("k8s.io/kubernetes/cmd/$b")
    done
    echo ")"
  } >"$src/tools.go"
  (
    cd "$src"
    go mod tidy
    CGO_ENABLED=0 nice -n 10 go build -trimpath \
      -ldflags "-s -w $(kube_version_ldflags "$version")" \
      -o "$out/bin/" "${packages[@]}"
  )
}

# BuildKit is not `go install`able either: its go.mod has an `exclude`
# block, which `go install pkg@version` refuses. Its module is downloaded
# from the proxy, copied to a writable directory (the module cache is
# read-only) and built there with its own go.mod and go.sum.
# install_buildkit: buildkitd and buildctl $BUILDKIT_VERSION into
# $tools_dir/buildkit-<version>.
install_buildkit() {
  install_from_source buildkit "$BUILDKIT_VERSION" build_buildkit buildkitd buildctl
}

# build_buildkit <version> <out dir>
build_buildkit() {
  local version=$1 out=$2
  local module
  module=$(cd "$out" && go mod download -json "github.com/moby/buildkit@$version" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$module" ] && [ -f "$module/go.mod" ] || {
    echo "tools: could not download github.com/moby/buildkit@$version from the Go module proxy" >&2
    return 1
  }
  cp -R "$module" "$out/src"
  chmod -R u+w "$out/src"
  mkdir -p "$out/bin"
  # Stamped as BuildKit's own Dockerfile does, so `buildkitd --version`
  # and the workers' records say which release this is.
  local v=github.com/moby/buildkit/version
  (
    cd "$out/src"
    CGO_ENABLED=0 nice -n 10 go build -trimpath \
      -ldflags "-s -w -X $v.Version=$version -X $v.Package=github.com/moby/buildkit" \
      -o "$out/bin/" ./cmd/buildkitd ./cmd/buildctl
  )
}

# kaniko is not `go install`able at $KANIKO_VERSION either (the proxy's
# version list refuses it for `go install pkg@version`), but its module
# downloads: it is copied to a writable directory and its executor built
# there with its own go.mod and go.sum, as for BuildKit.
# The executor is static (CGO_ENABLED=0), so bench/peers.sh can copy it
# into the throw-away root it runs kaniko in.
# install_kaniko: kaniko's executor $KANIKO_VERSION into
# $tools_dir/kaniko-<version>/bin/executor.
install_kaniko() {
  install_from_source kaniko "$KANIKO_VERSION" build_kaniko executor
}

# build_kaniko <version> <out dir>
build_kaniko() {
  local version=$1 out=$2
  local module
  module=$(cd "$out" && go mod download -json "github.com/GoogleContainerTools/kaniko@$version" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  if [ -z "$module" ] || [ ! -f "$module/go.mod" ]; then
    echo "tools: could not download github.com/GoogleContainerTools/kaniko@$version from the Go module proxy" >&2
    return 1
  fi
  cp -R "$module" "$out/src"
  chmod -R u+w "$out/src"
  mkdir -p "$out/bin"
  # Stamped as kaniko's Makefile does, so `executor version` says which
  # release this is.
  (
    cd "$out/src"
    CGO_ENABLED=0 nice -n 10 go build -trimpath \
      -ldflags "-s -w -X github.com/GoogleContainerTools/kaniko/pkg/version.version=$version" \
      -o "$out/bin/executor" ./cmd/executor
  )
}

# The test suites' own Go tools (e2e/tools: health-check runs kstatus and
# gopher-lua on live MultiArchBuilds; oci-registry is a loopback registry
# with the OCI 1.1 referrers API). Their version is a hash of their sources,
# so an edit rebuilds them and an unchanged checkout takes the cached ones.
install_e2e_tools() {
  local src version
  src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/e2e/tools"
  version=$(cd "$src" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0 |
    LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
  KILN_E2E_TOOLS_SRC=$src install_from_source e2e-tools "$version" build_e2e_tools health-check oci-registry
}

# build_e2e_tools <version> <out dir>
build_e2e_tools() {
  local out=$2
  cp -R "$KILN_E2E_TOOLS_SRC" "$out/src"
  mkdir -p "$out/bin"
  (cd "$out/src" && CGO_ENABLED=0 nice -n 10 go build -trimpath -ldflags "-s -w" -o "$out/bin/" ./health-check ./oci-registry)
}

install_one() {
  # Two test binaries starting clusters at once on a cold cache would build
  # the same tool twice over on a machine with few cores: the second waits
  # for the first and then finds the binary.
  mkdir -p "$tools_dir"
  local lock
  exec {lock}>"$tools_dir/.$1.lock"
  flock "$lock"
  install_one_locked "$1"
  local status=$?
  exec {lock}>&-
  return $status
}

install_one_locked() {
  case $1 in
  helm)
    # Stamped at link time as helm's own Makefile does: the version helm
    # reports, and the Kubernetes version `helm lint`/`helm template` assume
    # when no cluster is asked (the k8s.io modules helm is built with; the
    # default would be 1.20, older than kiln supports).
    local k=helm.sh/helm/v3
    install_tool helm "$HELM_VERSION" "$k/cmd/helm" -ldflags "-s -w \
      -X $k/internal/version.version=$HELM_VERSION \
      -X $k/pkg/lint/rules.k8sVersionMajor=1 -X $k/pkg/lint/rules.k8sVersionMinor=$HELM_KUBE_MINOR \
      -X $k/pkg/chartutil.k8sVersionMajor=1 -X $k/pkg/chartutil.k8sVersionMinor=$HELM_KUBE_MINOR"
    ;;
  kustomize)
    install_tool kustomize "$KUSTOMIZE_VERSION" sigs.k8s.io/kustomize/kustomize/v5 \
      -ldflags "-s -w"
    ;;
  kwok)
    install_tool kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok \
      -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
    ;;
  kubernetes)
    install_kubernetes kubernetes kube-apiserver kube-controller-manager kube-scheduler kubectl
    ;;
  kubelet)
    # The e2e tier's real node (e2e/cluster/real-node.sh). A tool of its own,
    # so adding it did not invalidate a cached control plane; the Go build
    # cache shares most packages with the control plane's build.
    install_kubernetes kubelet kubelet
    ;;
  containerd)
    # The real node's CRI runtime and its runc shim, stamped with the
    # version kubelet reports in the node's nodeInfo (the operator's
    # userNamespaces decision reads it).
    local c=github.com/containerd/containerd/v2
    KILN_TOOL_PACKAGES="$c/cmd/containerd-shim-runc-v2" \
      install_tool containerd "$CONTAINERD_VERSION" "$c/cmd/containerd" \
      -ldflags "-s -w -X $c/version.Version=$CONTAINERD_VERSION -X $c/version.Revision=$CONTAINERD_VERSION"
    ;;
  runc)
    # cgo and libseccomp (scripts/setup.sh installs libseccomp-dev): runc
    # without seccomp would refuse every RuntimeDefault pod.
    KILN_TOOL_CGO=1 install_tool runc "$RUNC_VERSION" github.com/opencontainers/runc \
      -tags seccomp -ldflags "-s -w"
    ;;
  buildkit)
    install_buildkit
    ;;
  kaniko)
    install_kaniko
    ;;
  e2e-tools)
    install_e2e_tools
    ;;
  cosign)
    install_tool cosign "$COSIGN_VERSION" github.com/sigstore/cosign/v2/cmd/cosign \
      -ldflags "-s -w -X sigs.k8s.io/release-utils/version.gitVersion=$COSIGN_VERSION"
    ;;
  oras)
    install_tool oras "$ORAS_VERSION" oras.land/oras/cmd/oras \
      -ldflags "-s -w -X oras.land/oras/internal/version.Version=${ORAS_VERSION#v}"
    ;;
  *)
    echo "tools: unknown tool '$1' (known: helm kustomize kwok kubernetes kubelet containerd runc buildkit kaniko e2e-tools cosign oras)" >&2
    return 2
    ;;
  esac
}

[ $# -gt 0 ] || set -- helm kustomize

bins=()
for tool in "$@"; do
  bin=$(install_one "$tool")
  bins+=("$bin")
done
(
  IFS=:
  printf '%s\n' "${bins[*]}"
)
