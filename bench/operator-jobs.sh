#!/usr/bin/env bash
# A partial operator scale check: N MultiArchBuilds of linux/amd64 and
# linux/arm64 applied at once against the e2e control plane (kwok nodes,
# nothing runs the pods), for each operator binary given: the time until
# every builder Job exists, the operator's API requests from its start
# until then plus a settling time (counted from kube-client's debug log,
# one "http.status_code" line per request), and its peak RSS (VmHWM).
# No builder results are simulated: the index half of the benchmark is
# not measured.
#
#   bench/operator-jobs.sh N LABEL=OPERATOR_BINARY...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
n=$1
shift
state=$(mktemp -d /tmp/kiln-bench-cluster.XXXXXX)
work=$(mktemp -d /tmp/kiln-bench-work.XXXXXX)
op_pid=
cleanup() {
  [ -n "$op_pid" ] && kill "$op_pid" 2>/dev/null && wait "$op_pid" 2>/dev/null || true
  "$repo/e2e/cluster/down.sh" "$state" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap "exit 1" INT TERM
"$repo/e2e/cluster/up.sh" "$state" >"$work/up.out" 2>"$work/up.err"
kube_bin=$(sed -n 's/^KUBE_BIN=//p' "$work/up.out")
export KUBECONFIG=$state/kubeconfig
kubectl() { "$kube_bin/kubectl" "$@"; }
kubectl apply --server-side -f "$repo/config/crd/multiarchbuilds.kiln.dev.yaml" -f "$repo/config/crd/buildrequests.kiln.dev.yaml" >/dev/null
kubectl wait --for=condition=Established crd/multiarchbuilds.kiln.dev crd/buildrequests.kiln.dev >/dev/null

for run in "$@"; do
  label=${run%%=*}
  binary=${run#*=}
  ns=bench-$label
  kubectl create namespace "$ns" >/dev/null
  RUST_LOG=info,kube_client=debug "$binary" --builder-image=registry.invalid/builder:1 \
    --builder-image-pull-policy=Never --watch-namespace="$ns" \
    --metrics-bind-address=127.0.0.1:0 --health-probe-bind-address=127.0.0.1:0 \
    2>"$work/$label.log" &
  op_pid=$!
  sleep 3
  for i in $(seq 1 "$n"); do
    cat <<YAML
---
apiVersion: kiln.dev/v1alpha1
kind: MultiArchBuild
metadata: {name: b$i, namespace: $ns}
spec:
  context: git://example.invalid/app.git#main
  destinations: [registry.invalid/app:$i]
  platforms: [linux/amd64, linux/arm64]
YAML
  done >"$work/$label.yaml"
  start=$(date +%s.%N)
  kubectl apply --server-side -f "$work/$label.yaml" >/dev/null
  while :; do
    jobs=$(kubectl get jobs -n "$ns" --no-headers 2>/dev/null | wc -l)
    [ "$jobs" -ge $((2 * n)) ] && break
    sleep 0.2
  done
  end=$(date +%s.%N)
  sleep 10
  requests=$(sed 's/\x1b\[[0-9;]*m//g' "$work/$label.log" | grep -c 'http.status_code' || true)
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$op_pid/status")
  kill "$op_pid"
  wait "$op_pid" 2>/dev/null || true
  op_pid=
  python3 - "$label" "$n" "$start" "$end" "$requests" "$rss" <<'PY'
import sys
label, n, start, end, requests, rss = sys.argv[1:]
n = int(n)
print(f"{label}: {2*n} Jobs for {n} builds in {float(end)-float(start):.2f} s after the apply; "
      f"{int(requests)} API requests ({int(requests)/n:.1f} per build, startup included); "
      f"peak RSS {int(rss)/1024:.1f} MiB")
PY
done
