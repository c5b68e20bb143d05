#!/usr/bin/env bash
# The whole test suite: installs what the tests need, checks formatting,
# runs every unit and integration test (each starts its own registry and
# servers on loopback), runs each fuzz target for a bounded time, checks
# the Helm chart and kustomize config, then runs the demo build end to
# end; and fails if any of it changed the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

# The tests must leave the machine as they found it (outside their own
# temporary directories): read its state now and compare at the end, even
# when a test fails.
. scripts/lib/machine-state.sh
state_dir=$(mktemp -d "${TMPDIR:-/tmp}/kiln-machine-state.XXXXXX")
machine_state >"$state_dir/before"
check_machine_state() {
  machine_state >"$state_dir/after"
  if ! diff -u "$state_dir/before" "$state_dir/after" >&2; then
    echo "error: the test suite changed the machine (see the diff above)" >&2
    rm -rf "$state_dir"
    return 1
  fi
  echo "machine state: unchanged" >&2
  rm -rf "$state_dir"
}
trap 'status=$?; check_machine_state || status=1; exit $status' EXIT

echo "==> cargo fmt --check" >&2
cargo fmt --all -- --check

echo "==> cargo test" >&2
# One full build, no incremental caches: CI builds from a fresh clone, and
# the incremental state would only add gigabytes to its target directory.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo test --workspace --all-targets --no-fail-fast

echo "==> fuzz targets (libFuzzer, ${KILN_FUZZ_SECONDS:-20} s each)" >&2
fuzz/run.sh "${KILN_FUZZ_SECONDS:-20}"

echo "==> deployment artifacts (helm lint/template, kustomize)" >&2
scripts/check-deploy.sh

echo "==> demo build" >&2
scripts/demo.sh >/dev/null
echo "demo build: ok" >&2
