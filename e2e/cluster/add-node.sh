#!/usr/bin/env bash
# Adds a fake node of the given architecture to the e2e cluster in STATE_DIR
# (started by up.sh); kwok takes it over and keeps it Ready.
#
#   e2e/cluster/add-node.sh STATE_DIR NAME ARCH [OS]
#
# The labels are the ones a kubelet puts on its node, so the scheduler and
# the operator's native-node checks see a real-looking node; `type=kwok` is
# what kwok selects its nodes by.
set -euo pipefail

[ $# -ge 3 ] && [ $# -le 4 ] || {
  echo "usage: $0 STATE_DIR NAME ARCH [OS]" >&2
  exit 2
}
state=$1 name=$2 arch=$3 os=${4:-linux}
repo=$(cd "$(dirname "$0")/../.." && pwd)
kubectl=${KUBECTL:-$("$repo/scripts/tools.sh" kubernetes)/kubectl}

"$kubectl" --kubeconfig="$state/kubeconfig" create -f - >/dev/null <<NODE
apiVersion: v1
kind: Node
metadata:
  name: $name
  labels:
    type: kwok
    kubernetes.io/arch: $arch
    kubernetes.io/os: $os
    kubernetes.io/hostname: $name
    beta.kubernetes.io/arch: $arch
    beta.kubernetes.io/os: $os
    node.kubernetes.io/instance-type: kiln-e2e-fake
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
status:
  nodeInfo:
    architecture: $arch
    operatingSystem: $os
NODE
