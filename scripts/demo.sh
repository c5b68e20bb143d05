#!/usr/bin/env bash
# Builds a small multi-platform image (linux/amd64 and linux/arm64) with
# kiln into a registry that this script starts on loopback, then shows the
# image index and its per-platform manifests. Nothing leaves the machine.
#
# examples/multiarch/Dockerfile cross-"compiles" a program in a stage
# `FROM --platform=$BUILDPLATFORM` for each TARGETARCH, and the final
# stage gets a RUN that executes under qemu-user emulation for the foreign
# architecture, when an interpreter for it is registered in binfmt_misc
# (scripts/binfmt.sh; `--emulation=auto` is kiln's default). Without one,
# the demo says so and leaves that RUN out.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
# shellcheck source=lib/registry.sh
. scripts/lib/registry.sh

echo "==> building kiln" >&2
cargo build --quiet -p kiln-builder --bin kiln
kiln="${CARGO_TARGET_DIR:-target}/debug/kiln"

start_registry
work=$(mktemp -d)
cleanup() {
  rm -rf "$work"
  stop_registry
}
trap cleanup EXIT

# The base image: Debian's busybox-static for both architectures (the
# host's amd64 one, and the arm64 one scripts/setup.sh caches), built
# into a two-platform image by kiln itself (COPY only: no emulation).
host_arch=$(dpkg --print-architecture)
if [ "$host_arch" != amd64 ]; then
  echo "demo: needs an amd64 host (it uses the host's busybox for linux/amd64)" >&2
  exit 1
fi
arm64_busybox="${KILN_CACHE_DIR:-$HOME/.cache/kiln}/busybox-static/arm64/busybox"
for arch in amd64 arm64; do
  mkdir -p "$work/base/rootfs-$arch/bin"
done
cp /bin/busybox "$work/base/rootfs-amd64/bin/busybox"
cp "$arm64_busybox" "$work/base/rootfs-arm64/bin/busybox"
for arch in amd64 arm64; do
  for applet in sh cat echo printf mkdir chmod uname; do
    ln -s busybox "$work/base/rootfs-$arch/bin/$applet"
  done
done
cat >"$work/base/Dockerfile" <<'DOCKERFILE'
FROM scratch
ARG TARGETARCH
COPY rootfs-${TARGETARCH}/ /
DOCKERFILE
base="$REGISTRY/kiln-demo/busybox:latest"
echo "==> kiln build of the base image → $base" >&2
"$kiln" --context="dir://$work/base" --destination="$base" \
  --platform=linux/amd64,linux/arm64 --insecure --reproducible

# The demo image. Its final stage's RUN executes for each platform, the
# foreign one under emulation: without a qemu-user interpreter for arm64
# registered, the demo says so and leaves that RUN out.
cp -r examples/multiarch "$work/app"
binfmt_dir="${KILN_BINFMT_MISC_DIR:-/proc/sys/fs/binfmt_misc}"
if grep -qx enabled "$binfmt_dir/qemu-aarch64" 2>/dev/null; then
  echo "==> qemu-aarch64 is registered: the final stage's RUN runs under emulation for linux/arm64" >&2
else
  sed -i '/^RUN hello /d' "$work/app/Dockerfile"
  echo "==> no qemu-aarch64 interpreter registered in $binfmt_dir: skipping the emulated RUN (scripts/binfmt.sh registers one)" >&2
fi

image="$REGISTRY/kiln-demo/hello:latest"
echo "==> kiln build of examples/multiarch → $image" >&2
"$kiln" \
  --context="dir://$work/app" \
  --destination="$image" \
  --platform=linux/amd64,linux/arm64 \
  --build-arg=BASE="$base" \
  --insecure \
  --reproducible \
  --digest-file="$work/digest"

echo
echo "pushed:  $image"
echo "digest:  $(cat "$work/digest")"
echo
echo "==> the image index (skopeo inspect --raw)" >&2
index=$(skopeo inspect --raw --tls-verify=false "docker://$image")
echo "$index" | python3 -m json.tool
for digest in $(echo "$index" | python3 -c 'import json, sys; print(" ".join(m["digest"] for m in json.load(sys.stdin)["manifests"]))'); do
  echo
  echo "==> ${image%:*}@$digest" >&2
  skopeo inspect --raw --tls-verify=false "docker://${image%:*}@$digest" | python3 -m json.tool
done
