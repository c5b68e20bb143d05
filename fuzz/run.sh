#!/usr/bin/env bash
# Runs kiln's fuzz targets with libFuzzer for a bounded time each.
#
#   fuzz/run.sh [SECONDS] [TARGET...]     # default: 20 s, every target
#
# Built with stable rustc: the sanitizer-coverage passes and flags that
# cargo-fuzz passes (no -Z flag among them), applied to the target only
# (--target keeps build scripts uninstrumented). The build is cached
# outside the repository (${KILN_FUZZ_TARGET_DIR:-~/.cache/kiln/fuzz-target}),
# so a second run only rebuilds kiln-builder. Each run starts from an
# empty corpus kept in memory (the unpacking targets chroot away from any
# corpus directory) and fails on the first crash or failed assertion; the
# log printed then holds the input (libFuzzer's "Base64:" line).
# The unpacking targets enter a private mount namespace chrooted into a
# tmpfs first, so they need root, like the rest of the suite.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-20}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(unpack context_tar manifest reference dockerignore dockerfile challenge cosign_key
  sbom_dpkg sbom_apk sbom_rpm_header sbom_python sbom_node sbom_binary sbom_layer)

host=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR=${KILN_FUZZ_TARGET_DIR:-$HOME/.cache/kiln/fuzz-target}
export CARGO_INCREMENTAL=0
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"

bins=()
for target in "${targets[@]}"; do bins+=(--bin "$target"); done
echo "fuzz: building ${targets[*]}" >&2
nice cargo build --release --target "$host" "${bins[@]}" >&2

work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
failed=0
for target in "${targets[@]}"; do
  mkdir -p "$work/$target"
  echo "fuzz: $target for ${seconds}s" >&2
  if ! (cd "$work/$target" && "$CARGO_TARGET_DIR/$host/release/$target" \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    >"$work/$target/log" 2>&1); then
    echo "fuzz: $target FAILED; its log:" >&2
    tail -n 60 "$work/$target/log" >&2
    failed=1
  else
    grep -E '^stat::number_of_executed_units' "$work/$target/log" | sed "s/^/fuzz: $target /" >&2 || true
  fi
done
exit $failed
