#!/usr/bin/env bash
# Builds examples/hello with kiln into a registry that this script starts on
# loopback, then shows what was pushed. Nothing leaves the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
# shellcheck source=lib/registry.sh
. scripts/lib/registry.sh

echo "==> building kiln" >&2
cargo build --quiet -p kiln-builder --bin kiln

start_registry
image="$REGISTRY/kiln-demo/hello:latest"
out=$(mktemp -d)
echo "==> kiln build of examples/hello → $image" >&2
"${CARGO_TARGET_DIR:-target}/debug/kiln" \
  --context=dir://examples/hello \
  --dockerfile=Dockerfile \
  --destination="$image" \
  --insecure \
  --reproducible \
  --digest-file="$out/digest" \
  --image-name-with-digest-file="$out/name"

echo
echo "pushed:  $image"
echo "digest:  $(cat "$out/digest")"
echo "pinned:  $(cat "$out/name")"
echo
echo "==> what the registry holds (skopeo inspect)" >&2
skopeo inspect --tls-verify=false "docker://$image" | head -n 30
rm -rf "$out"
