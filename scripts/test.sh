#!/usr/bin/env bash
# The whole test suite: installs what the tests need, checks formatting,
# runs every unit and integration test (each starts its own registry and
# servers on loopback), checks the Helm chart and kustomize config, then
# runs the demo build end to end.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

echo "==> cargo fmt --check" >&2
cargo fmt --all -- --check

echo "==> cargo test" >&2
cargo test --workspace --all-targets

echo "==> deployment artifacts (helm lint/template, kustomize)" >&2
scripts/check-deploy.sh

echo "==> demo build" >&2
scripts/demo.sh >/dev/null
echo "demo build: ok" >&2
