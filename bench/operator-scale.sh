#!/usr/bin/env bash
# The operator at scale (e2e/benches/operator_scale.rs): N MultiArchBuilds of
# two platforms created at once on the e2e control plane, builder results
# simulated; prints Job creation and index latencies (p50/p99), API
# requests per build and peak RSS for each operator binary.
#
#   bench/operator-scale.sh [--builds N] [LABEL=OPERATOR_BINARY...]
#
# Without a binary, today's kiln-operator (release) is measured as "kiln".
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
# One invocation for both, so they share one feature resolution and the
# second build of either is a no-op.
bench=$(cargo build --release -p kiln-operator --bin kiln-operator \
  -p kiln-e2e --bench operator_scale --message-format=json |
  python3 -c '
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message["target"]["name"] == "operator_scale" and message.get("executable"):
        print(message["executable"])
')
[ -n "$bench" ] || { echo "error: the operator_scale bench was not built" >&2; exit 1; }
has_binary=false
for arg in "$@"; do
  case $arg in *=*) has_binary=true ;; esac
done
if ! $has_binary; then
  set -- "$@" "kiln=$repo/target/release/kiln-operator"
fi
exec "$bench" --bench "$@"
