#!/usr/bin/env bash
# Starts kiln's end-to-end test cluster on loopback and returns once it is
# usable: etcd (Debian's etcd-server), kube-apiserver, kube-controller-manager
# and kube-scheduler (built from source by scripts/tools.sh, cached by
# version), and kwok keeping fake nodes Ready — two linux/amd64 and one
# linux/arm64. Nothing runs pods: they stay bound and Pending until a pod
# runner (kiln_e2e::runner) plays the kubelet.
#
#   e2e/cluster/up.sh [--supervise] STATE_DIR
#
# STATE_DIR (created if missing, best empty) receives the certificates, data,
# logs, the admin kubeconfig (STATE_DIR/kubeconfig) and the pids;
# e2e/cluster/down.sh STATE_DIR stops everything and removes it.
#
# --supervise (what the Rust harness uses) keeps this script running as the
# parent of every server once the cluster is up: on SIGTERM or SIGINT, or
# when the process that started it exits (a test binary that panicked, was
# interrupted or kept the cluster in a static), it stops the servers, reaps
# them — so not even a zombie is left where init does not reap — removes
# STATE_DIR and exits.
#
# Every server listens on 127.0.0.1 only, on free ports. Progress goes to
# stderr; stdout gets `KEY=value` lines (KUBECONFIG, API_URL, STATE_DIR,
# KUBE_BIN), then READY.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

supervise=0
if [ "${1:-}" = --supervise ]; then
  supervise=1
  shift
fi
[ $# -eq 1 ] || {
  echo "usage: $0 [--supervise] STATE_DIR" >&2
  exit 2
}
owner=$PPID
mkdir -p "$1"
state=$(cd "$1" && pwd)
pids="$state/pids"
logs="$state/logs"
pki="$state/pki"
mkdir -p "$logs" "$pki"
: >>"$pids"

fail() {
  echo "e2e cluster: $*" >&2
  echo "e2e cluster: logs are in $logs" >&2
  "$here/down.sh" --keep "$state" >&2 || true
  exit 1
}

if [ $supervise -eq 1 ]; then
  stop_and_exit() {
    trap - TERM INT
    "$here/down.sh" --keep "$state" >&2 || true
    # The servers are this shell's children: collect them.
    wait 2>/dev/null || true
    rm -rf "$state"
    exit 0
  }
  # Installed before anything starts, so a stop asked for at any moment —
  # even right after READY — finds it.
  trap stop_and_exit TERM INT
fi

start=$SECONDS
kube_bin=$("$repo/scripts/tools.sh" kubernetes) || fail "building the Kubernetes binaries failed (scripts/tools.sh kubernetes)"
kwok_bin=$("$repo/scripts/tools.sh" kwok) || fail "building kwok failed (scripts/tools.sh kwok)"
etcd_bin=$(command -v etcd) || fail "etcd is not installed; run scripts/setup.sh (Debian package etcd-server)"
tools_seconds=$((SECONDS - start))

# Free loopback ports, all held open together so no two are the same.
read -r etcd_port etcd_peer_port api_port cm_port scheduler_port < <(
  python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)

# --- certificates (ECDSA P-256: generated in milliseconds) -----------------
openssl_quiet() { openssl "$@" 2>>"$logs/openssl.log"; }
new_key() { openssl_quiet genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/$1.key"; }

# cert NAME SUBJECT EXTENSIONS: a certificate signed by the cluster CA.
cert() {
  local name=$1 subject=$2 extensions=$3
  new_key "$name"
  openssl_quiet req -new -key "$pki/$name.key" -subj "$subject" -out "$pki/$name.csr"
  printf '%s\n' "$extensions" >"$pki/$name.ext"
  openssl_quiet x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 7 -extfile "$pki/$name.ext" -out "$pki/$name.crt"
}
client_ext="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"

new_key ca
openssl_quiet req -x509 -new -key "$pki/ca.key" -subj "/CN=kiln-e2e-ca" -days 7 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$pki/ca.crt" || fail "creating the cluster CA failed (openssl)"
# The first address of the service range (10.0.0.1) is the in-cluster name
# of the apiserver; the names are the ones in-cluster clients use.
cert apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" ||
  fail "creating the apiserver certificate failed (openssl)"
cert admin "/O=system:masters/CN=kiln-e2e-admin" "$client_ext" || fail "creating the admin certificate failed"
cert controller-manager "/CN=system:kube-controller-manager" "$client_ext" || fail "creating the controller-manager certificate failed"
cert scheduler "/CN=system:kube-scheduler" "$client_ext" || fail "creating the scheduler certificate failed"
# The apiserver's identity towards kubelets (logs, exec, port-forward) on
# real nodes (e2e/cluster/real-node.sh).
cert kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client_ext" ||
  fail "creating the apiserver's kubelet client certificate failed"
# Service-account tokens are signed with this key (ES256).
new_key service-account
openssl_quiet pkey -in "$pki/service-account.key" -pubout -out "$pki/service-account.pub" ||
  fail "creating the service-account signing key failed (openssl)"

api_url="https://127.0.0.1:$api_port"

# kubeconfig FILE USER: credentials of USER's certificate for this cluster.
kubeconfig() {
  local file=$1 user=$2
  cat >"$file" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: kiln-e2e
  cluster:
    server: $api_url
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$pki/$user.crt")
    client-key-data: $(base64 -w0 "$pki/$user.key")
contexts:
- name: kiln-e2e
  context:
    cluster: kiln-e2e
    user: $user
current-context: kiln-e2e
KUBECONFIG
}
kubeconfig "$state/kubeconfig" admin
kubeconfig "$state/controller-manager.kubeconfig" controller-manager
kubeconfig "$state/scheduler.kubeconfig" scheduler

# --- processes ---------------------------------------------------------------
# launch NAME COMMAND...: in its own session (a Ctrl-C of the caller reaches
# the supervising script, which stops the servers in order), output to
# logs/NAME.log.
launch() {
  local name=$1
  shift
  setsid "$@" </dev/null >"$logs/$name.log" 2>&1 &
  echo "$name $!" >>"$pids"
}

# wait_for WHAT SECONDS COMMAND...: polls COMMAND until it succeeds.
wait_for() {
  local what=$1 limit=$2 deadline
  shift 2
  deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "$what did not become ready within ${limit}s"
    sleep 0.2
  done
}

launch etcd "$etcd_bin" --name kiln-e2e --data-dir "$state/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
  --initial-cluster "kiln-e2e=http://127.0.0.1:$etcd_peer_port" --initial-cluster-state new
wait_for etcd 30 curl -fsS "http://127.0.0.1:$etcd_port/health"

launch kube-apiserver "$kube_bin/kube-apiserver" \
  --bind-address=127.0.0.1 --secure-port="$api_port" --advertise-address=127.0.0.1 \
  --etcd-servers="http://127.0.0.1:$etcd_port" \
  --cert-dir="$state/apiserver-certs" \
  --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" \
  --service-account-key-file="$pki/service-account.pub" \
  --service-account-signing-key-file="$pki/service-account.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --authorization-mode=Node,RBAC \
  --kubelet-client-certificate="$pki/kubelet-client.crt" --kubelet-client-key="$pki/kubelet-client.key" \
  --kubelet-preferred-address-types=InternalIP,Hostname \
  --service-cluster-ip-range=10.0.0.0/24 \
  --endpoint-reconciler-type=none \
  --profiling=false
wait_for kube-apiserver 90 curl -fsS --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" "$api_url/readyz"

launch kube-controller-manager "$kube_bin/kube-controller-manager" \
  --kubeconfig="$state/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$state/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$state/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$cm_port" --cert-dir="$state/controller-manager-certs" \
  --leader-elect=false \
  --use-service-account-credentials=true \
  --service-account-private-key-file="$pki/service-account.key" \
  --root-ca-file="$pki/ca.crt" \
  --controllers='*'
launch kube-scheduler "$kube_bin/kube-scheduler" \
  --kubeconfig="$state/scheduler.kubeconfig" \
  --authentication-kubeconfig="$state/scheduler.kubeconfig" \
  --authorization-kubeconfig="$state/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$scheduler_port" --cert-dir="$state/scheduler-certs" \
  --leader-elect=false

# kwok reads ~/.kwok/kwok.yaml besides --config: a private HOME keeps a
# developer's own kwok set-up out of the tests. Its default node stages
# (initialize, then a status heartbeat every 20-45s) and the node leases it
# renews every 10s (as a kubelet does, --node-lease-duration-seconds; without
# it kwok renews neither and the node lifecycle controller marks the nodes
# NotReady after its grace period) keep the nodes Ready; the one pod
# stage below matches no pod, which replaces kwok's default pod stages
# (Running, Succeeded, delete): pods are the runner's.
mkdir -p "$state/kwok-home"
cat >"$state/kwok.yaml" <<'KWOK'
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pods-belong-to-the-kiln-runner
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchLabels:
      kiln.dev/kwok-stage-that-never-matches: "true"
  next: {}
KWOK
# Supervised: kwok v0.7.0 panics ("interface {} is
# cache.DeletedFinalStateUnknown, not *v1.Node") when its watch missed a
# node's deletion, which tests that delete nodes cause under load; every
# fake node would then go NotReady. Restarted at once, it takes the nodes
# over again before their leases expire. down.sh kills the whole group.
launch kwok bash -c 'while :; do
  env HOME="$1/kwok-home" "$2/kwok" \
    --kubeconfig="$1/kubeconfig" --config="$1/kwok.yaml" \
    --manage-all-nodes=false --manage-nodes-with-label-selector=type=kwok \
    --node-lease-duration-seconds=40 --node-ip=127.0.0.1
  echo "kiln-e2e: kwok exited ($?); restarting it" >&2
  sleep 1
done' kwok-supervisor "$state" "$kwok_bin"

export KUBECONFIG="$state/kubeconfig" KUBECTL="$kube_bin/kubectl"
for node in amd64-1:amd64 amd64-2:amd64 arm64-1:arm64; do
  "$here/add-node.sh" "$state" "kiln-e2e-${node%%:*}" "${node##*:}" || fail "creating fake node ${node%%:*} failed"
done
wait_for "the fake nodes" 60 "$kube_bin/kubectl" wait --for=condition=Ready node --all --timeout=1s
# The service-account controller creating `default` means the
# controller-manager is up and talking to the apiserver.
wait_for kube-controller-manager 60 "$kube_bin/kubectl" get serviceaccount default --namespace=default

echo "e2e cluster: up in $((SECONDS - start))s (${tools_seconds}s for the binaries) at $api_url, state in $state" >&2
echo "KUBECONFIG=$state/kubeconfig"
echo "API_URL=$api_url"
echo "STATE_DIR=$state"
echo "KUBE_BIN=$kube_bin"
echo READY
[ $supervise -eq 1 ] || exit 0

exec >/dev/null
# `sleep & wait` rather than a plain sleep, so a signal is handled at once.
while kill -0 "$owner" 2>/dev/null; do
  sleep 1 &
  wait $! || true
done
stop_and_exit
