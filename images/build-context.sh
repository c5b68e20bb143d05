#!/usr/bin/env bash
# Prepares the build context of kiln's two images in images/context/ (next
# to the Dockerfiles; ignored by git) and prints its path:
#
#   images/context/kiln                 -> builder.Dockerfile
#   images/context/kaniko/executor      -> builder.Dockerfile (symlink to
#                                          /kiln/executor)
#   images/context/kiln-operator        -> operator.Dockerfile
#   images/context/ca-certificates.crt  -> both
#
# The binaries must be statically linked (images/README.md says why). By
# default the script builds them so: release profile, the host's target
# triple, and for a -gnu triple `-C target-feature=+crt-static` (glibc linked
# statically; its dns and files NSS modules are part of libc since glibc
# 2.34, so name resolution works in a scratch image). The build uses its own
# target directory, so it neither invalidates nor waits for target/release.
#
# Environment:
#   KILN_TARGET          target triple (default: the host's; a -musl triple
#                        is static by itself when its rustup target is
#                        installed)
#   KILN_IMAGE_TARGET_DIR  cargo target directory (default: target/images)
#   KILN_IMAGE_PROFILE   cargo profile of the build (default: release; the
#                        e2e real-node test builds `dev`, faster to compile)
#   KILN_IMAGE_CONTEXT   where to prepare the context (default:
#                        images/context)
#   KILN_BIN_DIR         take kiln and kiln-operator from this directory
#                        instead of building them
#   KILN_CA_BUNDLE       CA bundle to copy (default:
#                        /etc/ssl/certs/ca-certificates.crt, Debian's
#                        ca-certificates)
#
# Then, from the repository root:
#   kiln --context=images/context --dockerfile=images/builder.Dockerfile \
#        --reproducible --destination=<registry>/kiln-builder:<version>
#   kiln --context=images/context --dockerfile=images/operator.Dockerfile \
#        --reproducible --destination=<registry>/kiln-operator:<version>
set -euo pipefail
cd "$(dirname "$0")/.."

context=${KILN_IMAGE_CONTEXT:-images/context}
ca_bundle=${KILN_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

if [ -n "${KILN_BIN_DIR:-}" ]; then
  bin_dir=$KILN_BIN_DIR
else
  target=${KILN_TARGET:-$(rustc -vV | sed -n 's/^host: //p')}
  target_dir=${KILN_IMAGE_TARGET_DIR:-target/images}
  rustflags=${RUSTFLAGS:-}
  case $target in
  *-gnu*) rustflags="$rustflags -C target-feature=+crt-static" ;;
  esac
  echo "build-context: building static kiln and kiln-operator for $target into $target_dir" >&2
  # --target keeps RUSTFLAGS off build scripts and proc macros, which must
  # stay dynamic host code.
  profile=${KILN_IMAGE_PROFILE:-release}
  RUSTFLAGS="$rustflags" CARGO_TARGET_DIR="$target_dir" cargo build --profile "$profile" --locked \
    --target "$target" -p kiln-builder --bin kiln -p kiln-operator --bin kiln-operator >&2
  case $profile in
  dev) bin_dir=$target_dir/$target/debug ;;
  *) bin_dir=$target_dir/$target/$profile ;;
  esac
fi

# A dynamic ELF names its loader in a PT_INTERP program header; a static one
# (static-pie included) has none.
check_static() {
  python3 - "$1" <<'PY'
import struct, sys
path = sys.argv[1]
with open(path, "rb") as f:
    data = f.read()
if data[:4] != b"\x7fELF" or data[4] != 2:
    sys.exit(f"{path}: not a 64-bit ELF executable")
order = "<" if data[5] == 1 else ">"
phoff, = struct.unpack_from(order + "Q", data, 0x20)
phentsize, phnum = struct.unpack_from(order + "HH", data, 0x36)
for i in range(phnum):
    p_type, = struct.unpack_from(order + "I", data, phoff + i * phentsize)
    if p_type == 3:  # PT_INTERP
        sys.exit(f"{path} is dynamically linked; build it static (see images/README.md)")
PY
}

for bin in kiln kiln-operator; do
  [ -x "$bin_dir/$bin" ] || {
    echo "build-context: $bin_dir/$bin is missing" >&2
    exit 1
  }
  check_static "$bin_dir/$bin"
done
[ -s "$ca_bundle" ] || {
  echo "build-context: no CA bundle at $ca_bundle (apt-get install ca-certificates)" >&2
  exit 1
}

rm -rf "$context"
mkdir -p "$context"
cp "$bin_dir/kiln" "$bin_dir/kiln-operator" "$context/"
cp "$ca_bundle" "$context/ca-certificates.crt"
mkdir -p "$context/kaniko"
ln -s /kiln/executor "$context/kaniko/executor"
chmod 0755 "$context/kiln" "$context/kiln-operator"
chmod 0644 "$context/ca-certificates.crt"
echo "build-context: ready; build with kiln --context=$context --dockerfile=images/<builder|operator>.Dockerfile" >&2
(cd "$context" && pwd)
