#!/usr/bin/env bash
# Installs the pinned deployment tools (helm, kustomize) with `go install`
# into a cache outside the repository, one directory per tool and version:
#
#   ${KILN_TOOLS_DIR:-$HOME/.cache/kiln/tools}/<name>-<version>/bin
#
# Idempotent: a tool whose binary is already there is not rebuilt, so a warm
# run takes milliseconds. Prints the bin directories joined by ':' on stdout,
# ready to prepend to PATH:
#
#   PATH="$(scripts/tools.sh):$PATH"
#
# Arguments name the tools to install (default: all). Progress goes to stderr.
# Needs Go >= 1.24 (what helm and kustomize at these versions declare) and
# the Go module proxy; a cold helm build takes a few minutes.
set -euo pipefail

HELM_VERSION=v3.19.5
KUSTOMIZE_VERSION=v5.8.1
# Minor of the k8s.io/* modules helm $HELM_VERSION is built with (its go.mod).
HELM_KUBE_MINOR=34

tools_dir=${KILN_TOOLS_DIR:-$HOME/.cache/kiln/tools}

# install <name> <version> <package> [go build flags...]
install_tool() {
  local name=$1 version=$2 package=$3
  shift 3
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
  if ! GOBIN="$tmp/bin" GOFLAGS="${GOFLAGS:-} -trimpath" CGO_ENABLED=0 \
    go install "$@" "$package@$version" >&2; then
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

install_one() {
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
  *)
    echo "tools: unknown tool '$1' (known: helm kustomize)" >&2
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
