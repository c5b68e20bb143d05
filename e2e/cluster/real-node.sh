#!/usr/bin/env bash
# A real linux/amd64 node for the e2e cluster (e2e/cluster/up.sh): kubelet,
# containerd and runc (built from the Go module proxy by scripts/tools.sh,
# cached by version), Debian's CNI plugins, joined to the cluster in
# CLUSTER_STATE. Images come from a registry of its own (Debian's
# docker-registry, HTTPS with a certificate from the cluster CA, so kiln's
# images trust it through their CA bundle as any private registry) listening
# on the node's bridge, where pods and containerd
# reach it; its pause image is built here from pause/pause.c and pushed by
# kiln. Nothing is pulled from the internet.
#
#   e2e/cluster/real-node.sh up [--supervise] CLUSTER_STATE NODE_STATE
#   e2e/cluster/real-node.sh down NODE_STATE
#
# KILN names the kiln binary that builds the pause image (default: kiln on
# PATH). Progress goes to stderr; stdout gets KEY=value lines (NODE_NAME,
# NODE_IP, REGISTRY, REGISTRY_CA, BRIDGE, CGROUP_ROOT, NODE_STATE), then
# READY.
#
# What stays on this machine's side, and how it is undone by `down`:
# - containerd, kubelet and every container run in one private mount and PID
#   namespace (unshare --kill-child): killing it kills them all, and every
#   mount they made (volumes, snapshots, network namespaces, the shadow
#   files below) goes with it. /run, /var/lib and /var/log are private
#   tmpfs mounts inside, so no default path of theirs reaches this
#   machine's disk; containerd's root and state and kubelet's root dir are
#   there, their configuration, sockets and logs in NODE_STATE.
# - kubelet sets vm.overcommit_memory, vm.panic_on_oom, kernel.panic,
#   kernel.panic_on_oops and kernel.keys.root_max{keys,bytes} unless they
#   hold the values it wants, and the CNI bridge plugin may enable
#   net.ipv4.ip_forward: inside the namespace each of those /proc/sys files
#   is a bind mount of a shadow file (NODE_STATE/sysctl/<name>) that starts
#   with the kernel's value; kubelet writes its values there, and the
#   kernel's own are never written.
# - the bridge (and its address) is deleted; the veths vanish with the
#   pods' network namespaces; the one iptables rule (the kubernetes Service
#   to the apiserver on loopback, for packets from the bridge) is deleted;
# - the cgroups (kubelet's cgroupRoot, one per node, in every hierarchy)
#   are removed once their processes are gone;
# - the registry is stopped. NODE_STATE is removed.
#
# --supervise keeps this script as the parent of the node once it is Ready:
# on SIGTERM or SIGINT, or when the process that started it exits, it runs
# `down` and exits. If the node's namespace dies before that (kubelet or
# containerd exited), its logs are copied to NODE_STATE-logs, which is left
# behind for the failure's reader.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

# The /proc/sys files kubelet and the CNI plugins would write.
shadowed_sysctls="vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes net/ipv4/ip_forward"

alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat:0:1}" != Z ]
}

# The mount points of the cgroup hierarchies: every v1 controller and the
# unified one on a hybrid machine, /sys/fs/cgroup alone on cgroup v2.
cgroup_hierarchies() {
  awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/self/mounts
}

# --- down ------------------------------------------------------------------
down() {
  local state=$1 keep=${2:-0}
  [ -d "$state" ] || return 0
  local pids=()
  local name pid
  if [ -f "$state/pids" ]; then
    while read -r name pid; do
      [ -n "$pid" ] && alive "$pid" && pids+=("$pid")
      : "$name"
    done <"$state/pids"
  fi
  local pid
  # The node's namespace first, at once: SIGKILL of its init (the kernel
  # then kills every process in it, containers included; the PID 1 of a
  # namespace ignores SIGTERM from outside), then the registry.
  if [ -f "$state/pids" ]; then
    while read -r name pid; do
      [ "$name" = node ] && kill -KILL -- "-$pid" 2>/dev/null || true
    done <"$state/pids"
  fi
  for pid in "${pids[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  for _ in $(seq 50); do
    local running=0
    for pid in "${pids[@]}"; do
      alive "$pid" && running=$((running + 1))
    done
    [ $running -eq 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  done
  # The cgroups, deepest first, once the kernel has let go of the last
  # process in them.
  if [ -f "$state/cgroup-root" ]; then
    local root dirs
    root=$(cat "$state/cgroup-root")
    local hierarchies=()
    mapfile -t hierarchies < <(cgroup_hierarchies)
    local tops=("${hierarchies[@]/%//$root}")
    for _ in $(seq 100); do
      dirs=$(find "${tops[@]}" -depth -type d 2>/dev/null || true)
      [ -z "$dirs" ] && break
      # shellcheck disable=SC2086
      rmdir $dirs 2>/dev/null || true
      sleep 0.1
    done
    if find "${tops[@]}" -maxdepth 0 -type d 2>/dev/null | grep -q .; then
      echo "real node: cgroups under $root could not be removed" >&2
    fi
  fi
  if [ -f "$state/iptables-rule" ]; then
    local rule=()
    mapfile -t rule <"$state/iptables-rule"
    while iptables -w 5 -t nat -D "${rule[@]}" 2>/dev/null; do :; done
  fi
  if [ -f "$state/bridge" ]; then
    local bridge
    bridge=$(cat "$state/bridge")
    ip link show "$bridge" >/dev/null 2>&1 && ip link delete "$bridge" type bridge
  fi
  [ "$keep" -eq 1 ] || rm -rf "$state"
}

# --- the private namespace's init -------------------------------------------
# Runs as PID 1 of the node's PID namespace, in its own mount namespace.
inside() {
  local state=$1
  # Private tmpfs over the default places of containerd, the CNI plugins
  # and kubelet (netns mounts, the CNI cache, /var/log/containers links).
  local dir
  for dir in /run /var/lib /var/log; do
    mount -t tmpfs -o mode=755 tmpfs "$dir"
  done
  local file
  for file in $shadowed_sysctls; do
    cat "/proc/sys/$file" >"$state/sysctl/${file//\//.}"
    mount --bind "$state/sysctl/${file//\//.}" "/proc/sys/$file"
  done
  # The kernel lets a user namespace (a pod with hostUsers: false) mount a
  # proc of its own only where a proc is already fully visible to it: the
  # shadow files above cover parts of /proc, so runc's mount of the
  # container's /proc failed with EPERM. One more proc, with nothing
  # mounted over it, is that fully visible one.
  mkdir -p /run/kiln-visible-proc
  mount -t proc -o nosuid,nodev,noexec proc /run/kiln-visible-proc
  # containerd finds its shim (containerd-shim-runc-v2) on PATH.
  local containerd_bin
  containerd_bin=$(cat "$state/containerd-bin")
  PATH="$containerd_bin:$PATH" "$containerd_bin/containerd" --config "$state/containerd.toml" \
    >"$state/logs/containerd.log" 2>&1 &
  local containerd_pid=$!
  for _ in $(seq 100); do
    [ -S "$state/containerd.sock" ] && break
    alive $containerd_pid || exit 1
    sleep 0.1
  done
  "$(cat "$state/kubelet-bin")" \
    --config="$state/kubelet.yaml" \
    --kubeconfig="$state/kubelet.kubeconfig" \
    --hostname-override="$(cat "$state/node-name")" \
    --node-ip="$(cat "$state/node-ip")" \
    --root-dir=/var/lib/kubelet \
    --node-labels=kiln.dev/real-node=true \
    --v=2 >"$state/logs/kubelet.log" 2>&1 &
  local kubelet_pid=$!
  # Either one stopping stops the node. Polled rather than `wait -n`: as
  # PID 1 this shell also inherits (and reaps) the containerd shims.
  while alive "$containerd_pid" && alive "$kubelet_pid"; do
    sleep 1
  done
  alive "$kubelet_pid" || echo "real node: kubelet exited" >&2
  alive "$containerd_pid" || echo "real node: containerd exited" >&2
  exit 1
}

# --- up ----------------------------------------------------------------------
up() {
  local supervise=0
  if [ "${1:-}" = --supervise ]; then
    supervise=1
    shift
  fi
  [ $# -eq 2 ] || {
    echo "usage: $0 up [--supervise] CLUSTER_STATE NODE_STATE" >&2
    exit 2
  }
  local owner=$PPID
  local cluster=$1
  mkdir -p "$2"
  state=$(cd "$2" && pwd)
  logs="$state/logs"
  pki="$cluster/pki"
  mkdir -p "$logs" "$state/sysctl" "$state/pki" "$state/cni" "$state/cni-ipam" "$state/pause"
  : >>"$state/pids"

  fail() {
    echo "real node: $*" >&2
    echo "real node: logs are in $logs" >&2
    down "$state" 1 >&2 || true
    exit 1
  }
  if [ $supervise -eq 1 ]; then
    stop_and_exit() {
      trap - TERM INT
      down "$state" >&2 || true
      wait 2>/dev/null || true
      exit 0
    }
    trap stop_and_exit TERM INT
  fi

  local start=$SECONDS
  [ -f "$pki/ca.key" ] || fail "$cluster is not an e2e cluster's state directory (no pki/ca.key)"
  local kubelet_bin kube_bin
  kubelet_bin=$("$repo/scripts/tools.sh" kubelet) || fail "building kubelet failed (scripts/tools.sh kubelet)"
  local runtime_bin containerd_bin
  containerd_bin=$("$repo/scripts/tools.sh" containerd) || fail "building containerd failed (scripts/tools.sh containerd)"
  runtime_bin=$("$repo/scripts/tools.sh" runc) || fail "building runc failed (scripts/tools.sh runc)"
  printf '%s\n' "$containerd_bin" >"$state/containerd-bin"
  kube_bin=$("$repo/scripts/tools.sh" kubernetes) || fail "building kubectl failed (scripts/tools.sh kubernetes)"
  local tool
  for tool in docker-registry gcc unshare ip iptables; do
    command -v "$tool" >/dev/null || fail "$tool is not installed; run scripts/setup.sh"
  done
  for tool in bridge host-local loopback; do
    [ -x "/usr/lib/cni/$tool" ] || fail "/usr/lib/cni/$tool is missing; run scripts/setup.sh (containernetworking-plugins)"
  done
  local kiln=${KILN:-$(command -v kiln || true)}
  [ -x "$kiln" ] || fail "set KILN to a kiln binary (it builds the pause image)"
  printf '%s\n' "$kubelet_bin/kubelet" >"$state/kubelet-bin"
  local tools_seconds=$((SECONDS - start))

  # Names of this node, unique on the machine.
  local id
  id=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
  local name="kiln-e2e-node-$id" bridge="kilnbr$id" cgroup_root="kiln-e2e-node-$id"
  printf '%s\n' "$name" >"$state/node-name"

  # A /24 of 10.200.0.0/13 that no route of this machine covers.
  local prefix
  prefix=$(
    python3 - <<'PY'
import ipaddress, random, subprocess
routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
used = []
for line in routes.splitlines():
    word = line.split()[0] if line.split() else ""
    if word in ("local", "broadcast", "unreachable", "prohibit", "blackhole"):
        word = line.split()[1]
    try:
        used.append(ipaddress.ip_network(word if "/" in word else word + "/32", strict=False))
    except ValueError:
        pass
for _ in range(1000):
    net = ipaddress.ip_network(f"10.{random.randint(200, 207)}.{random.randint(0, 255)}.0/24")
    if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
        print(".".join(str(net.network_address).split(".")[:3]))
        break
PY
  )
  [ -n "$prefix" ] || fail "no free /24 in 10.200.0.0/13 for the pod network"
  local gateway="$prefix.1"
  printf '%s\n' "$gateway" >"$state/node-ip"
  printf '%s\n' "$bridge" >"$state/bridge"
  ip link add "$bridge" type bridge || fail "creating bridge $bridge failed"
  ip addr add "$gateway/24" dev "$bridge"
  ip link set "$bridge" up

  # The kubernetes Service (10.0.0.1:443, what kubelet gives pods in
  # KUBERNETES_SERVICE_HOST/PORT) without a kube-proxy: packets from the
  # bridge to it go to the apiserver on loopback. route_localnet is a
  # setting of the bridge alone (gone with it); the rule is deleted by down.
  local api_url api_port
  api_url=$(sed -n 's/^ *server: //p' "$cluster/kubeconfig" | head -1)
  api_port=${api_url##*:}
  printf '1\n' >"/proc/sys/net/ipv4/conf/$bridge/route_localnet"
  printf '%s\n' PREROUTING -i "$bridge" -d 10.0.0.1/32 -p tcp --dport 443 \
    -m comment --comment "$name: the kubernetes Service" \
    -j DNAT --to-destination "127.0.0.1:$api_port" >"$state/iptables-rule"
  local rule=()
  mapfile -t rule <"$state/iptables-rule"
  iptables -w 5 -t nat -A "${rule[@]}" || fail "adding the kubernetes Service rule failed (iptables)"

  # The cgroup root kubelet puts its pods below, in every hierarchy.
  printf '%s\n' "$cgroup_root" >"$state/cgroup-root"
  local hierarchy
  while read -r hierarchy; do
    mkdir "$hierarchy/$cgroup_root" || fail "creating the cgroup $hierarchy/$cgroup_root failed"
    # cgroup v1's cpuset starts a new cgroup with no CPUs and no memory nodes.
    if [ -f "$hierarchy/cpuset.cpus" ] && [ -f "$hierarchy/cpuset.mems" ]; then
      cat "$hierarchy/cpuset.cpus" >"$hierarchy/$cgroup_root/cpuset.cpus"
      cat "$hierarchy/cpuset.mems" >"$hierarchy/$cgroup_root/cpuset.mems"
    fi
  done < <(cgroup_hierarchies)

  # Free ports: the registry's on the bridge, kubelet's and its healthz.
  local registry_port kubelet_port healthz_port
  read -r registry_port kubelet_port healthz_port < <(
    python3 - "$gateway" <<'PY'
import socket, sys
a = socket.socket(); a.bind((sys.argv[1], 0))
b = socket.socket(); b.bind((sys.argv[1], 0))
c = socket.socket(); c.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1], c.getsockname()[1])
PY
  )
  local registry="$gateway:$registry_port"

  launch() {
    local what=$1
    shift
    setsid "$@" </dev/null >"$logs/$what.log" 2>&1 &
    echo "$what $!" >>"$state/pids"
  }
  wait_for() {
    local what=$1 limit=$2 deadline
    shift 2
    deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
      [ $SECONDS -lt $deadline ] || fail "$what did not become ready within ${limit}s"
      sleep 0.2
    done
  }

  # --- certificates: the node's client identity, kubelet's and the
  # registry's serving ones, all from the cluster CA ---
  openssl_quiet() { openssl "$@" 2>>"$logs/openssl.log"; }
  cert() {
    local file=$1 subject=$2 extensions=$3 algorithm=${4:-EC}
    if [ "$algorithm" = RSA ]; then
      openssl_quiet genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$state/pki/$file.key"
    else
      openssl_quiet genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$state/pki/$file.key"
    fi
    openssl_quiet req -new -key "$state/pki/$file.key" -subj "$subject" -out "$state/pki/$file.csr"
    printf '%s\n' "$extensions" >"$state/pki/$file.ext"
    openssl_quiet x509 -req -in "$state/pki/$file.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
      -CAcreateserial -CAserial "$state/pki/ca.srl" -days 7 -extfile "$state/pki/$file.ext" \
      -out "$state/pki/$file.crt"
  }
  cert node "/O=system:nodes/CN=system:node:$name" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth" || fail "creating the node's client certificate failed"
  cert serving "/CN=$name" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:$gateway,DNS:$name" || fail "creating kubelet's serving certificate failed"
  # RSA: the TLS of busybox's wget (used in the tests) speaks it.
  cert registry "/CN=kiln-e2e-registry" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$gateway" RSA || fail "creating the registry's certificate failed"

  # --- registry ---
  cat >"$state/registry.yml" <<YAML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $state/registry
  delete:
    enabled: true
http:
  addr: $registry
  tls:
    certificate: $state/pki/registry.crt
    key: $state/pki/registry.key
YAML
  launch registry docker-registry serve "$state/registry.yml"
  wait_for "the registry" 20 curl -fsS --cacert "$pki/ca.crt" "https://$registry/v2/"

  # --- pause image ---
  gcc -static -Os -o "$state/pause/pause" "$here/pause/pause.c" 2>"$logs/gcc.log" || fail "compiling the pause program failed"
  printf 'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n' >"$state/pause/Dockerfile"
  TMPDIR="$state" "$kiln" --context="dir://$state/pause" --dockerfile="$state/pause/Dockerfile" \
    --reproducible --registry-certificate="$registry=$pki/ca.crt" --destination="$registry/kiln-e2e/pause:1" \
    >"$logs/pause-build.log" 2>&1 || fail "building the pause image with kiln failed"

  cat >"$state/kubelet.kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: kiln-e2e
  cluster:
    server: $api_url
    certificate-authority: $pki/ca.crt
users:
- name: $name
  user:
    client-certificate: $state/pki/node.crt
    client-key: $state/pki/node.key
contexts:
- name: kiln-e2e
  context:
    cluster: kiln-e2e
    user: $name
current-context: kiln-e2e
KUBECONFIG

  # --- containerd ---
  mkdir -p "$state/certs.d/$registry"
  # The CA for the server as well as for the host: containerd tries the
  # server after a host answered 404, and without it the registry's "not
  # found" for a missing image became an x509 error.
  cat >"$state/certs.d/$registry/hosts.toml" <<TOML
server = "https://$registry"
ca = "$pki/ca.crt"

[host."https://$registry"]
  capabilities = ["pull", "resolve"]
  ca = "$pki/ca.crt"
TOML
  # containerd 2's configuration (version 3). User namespaces for pods
  # (hostUsers: false) work from containerd 2.0 and runc 1.2 on; kubelet
  # 1.34 has them on by default.
  cat >"$state/containerd.toml" <<TOML
version = 3
# In the namespace's private tmpfs mounts (see inside()): gone with it, and
# reachable by a pod's user namespace (runc makes the rootfs's parent mount
# private from inside it, which fails with EACCES on a path through a
# directory only root may search, as a test's temporary NODE_STATE is).
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.erofs", "io.containerd.differ.v1.erofs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing", "io.containerd.nri.v1.nri"]

[grpc]
  address = "$state/containerd.sock"

[ttrpc]
  address = "$state/containerd.sock.ttrpc"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$state/containerd/opt"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"

  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$registry/kiln-e2e/pause:1"

  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "$state/certs.d"

# CRI pulls through the transfer service: it reads the registry's hosts.toml
# from here.
[plugins."io.containerd.transfer.v1.local"]
  config_path = "$state/certs.d"

[plugins."io.containerd.cri.v1.runtime"]
  # This machine's root lacks CAP_SYS_RESOURCE: without this every sandbox
  # fails ("can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  disable_apparmor = true
  cdi_spec_dirs = []

  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"

    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "$runtime_bin/runc"
        Root = "/run/runc"
        SystemdCgroup = false

  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$state/cni"
    max_conf_num = 1

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
TOML
  cat >"$state/cni/10-kiln-e2e.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "kiln-e2e",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$prefix.0/24", "rangeStart": "$prefix.10", "rangeEnd": "$prefix.250", "gateway": "$gateway"}]],
        "routes": [{"dst": "10.0.0.0/24"}],
        "dataDir": "$state/cni-ipam"
      }
    }
  ]
}
JSON

  # --- kubelet ---
  cat >"$state/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $gateway
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $healthz_port
tlsCertFile: $state/pki/serving.crt
tlsPrivateKeyFile: $state/pki/serving.key
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $pki/ca.crt
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://$state/containerd.sock
# cgroup v1 (hybrid) here, no systemd.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$cgroup_root
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
failSwapOn: false
# kubelet would write the kernel tunables it wants; they are shadowed in
# its mount namespace (see the top of this script), so it only reads them.
protectKernelDefaults: false
makeIPTablesUtilChains: false
podLogsDir: $state/pod-logs
volumePluginDir: $state/volume-plugins
resolvConf: /etc/resolv.conf
serializeImagePulls: false
maxPods: 20
# A busy build machine's disk must not evict the tests' pods, nor its images
# be collected under them.
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
YAML

  launch node unshare --mount --pid --kill-child --mount-proc --propagation private \
    bash "$here/real-node.sh" inside "$state"

  export KUBECONFIG="$cluster/kubeconfig"
  wait_for "kubelet" 60 curl -fsS "http://127.0.0.1:$healthz_port/healthz"
  wait_for "node $name" 60 "$kube_bin/kubectl" wait --for=condition=Ready "node/$name" --timeout=1s

  echo "real node: $name Ready in $((SECONDS - start))s (${tools_seconds}s for the binaries), registry $registry, state in $state" >&2
  echo "NODE_NAME=$name"
  echo "NODE_IP=$gateway"
  echo "REGISTRY=$registry"
  echo "REGISTRY_CA=$pki/ca.crt"
  echo "BRIDGE=$bridge"
  echo "CGROUP_ROOT=$cgroup_root"
  echo "NODE_STATE=$state"
  echo READY
  [ $supervise -eq 1 ] || exit 0
  exec >/dev/null
  local node_pid
  node_pid=$(sed -n 's/^node //p' "$state/pids")
  while kill -0 "$owner" 2>/dev/null; do
    if [ -n "$node_pid" ] && ! alive "$node_pid"; then
      # The node died under its owner: keep its logs (outside NODE_STATE,
      # which down removes) for whoever looks into the failure.
      node_pid=""
      cp -r "$logs" "$state-logs" 2>/dev/null || true
      echo "real node: $name stopped by itself; its logs are kept in $state-logs" >&2
    fi
    sleep 1 &
    wait $! || true
  done
  stop_and_exit
}

case "${1:-}" in
up)
  shift
  up "$@"
  ;;
down)
  [ $# -eq 2 ] || {
    echo "usage: $0 down NODE_STATE" >&2
    exit 2
  }
  down "$2"
  ;;
inside)
  inside "$2"
  ;;
*)
  echo "usage: $0 up [--supervise] CLUSTER_STATE NODE_STATE | down NODE_STATE" >&2
  exit 2
  ;;
esac
