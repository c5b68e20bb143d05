#!/usr/bin/env bash
# Runs kaniko's executor in a throw-away root, for bench/peers.sh. kaniko
# unpacks every base image over its own / and deletes what is there between
# stages, so it must never see the host's /. Started by peers.sh as
#
#   unshare --mount --pid --fork --propagation private -- \
#       bash bench/kaniko-root.sh HOST_MNT_NS ROOT EXECUTOR CONTEXT [EXECUTOR ARGS...]
#
# and refuses to run unless it is in a mount namespace other than the host's
# (HOST_MNT_NS is the host's `readlink /proc/self/ns/mnt`). ROOT is an empty
# directory on disk that becomes kaniko's /: this script mounts into it
# (a bind of itself, proc of the new PID namespace, a tmpfs /dev with the
# usual device nodes, sysfs read-only, the context read-only at /workspace,
# copies of the host's resolv.conf, hosts and hostname bound over /etc's
# files, the copies kept in the tmpfs /dev), copies the static executor and the host's CA bundle into
# ROOT/kaniko, and chroots there. Every mount is private to the namespace
# and goes away with it when kaniko exits; peers.sh then deletes ROOT.
# Mount points are on kaniko's ignore list (it reads /proc/self/mountinfo),
# so neither /workspace nor the /etc files end up in a layer.
set -euo pipefail

host_ns=$1 root=$2 executor=$3 context=$4
shift 4

if [[ $(readlink /proc/self/ns/mnt) == "$host_ns" ]]; then
    echo "kaniko-root: still in the host's mount namespace; refusing to run kaniko" >&2
    exit 1
fi
if [[ $$ != 1 ]]; then
    echo "kaniko-root: not the first process of a new PID namespace (unshare --pid --fork)" >&2
    exit 1
fi
if [[ ! -d $root ]] || [[ -n $(ls -A "$root") ]]; then
    echo "kaniko-root: $root must be an empty directory" >&2
    exit 1
fi

# Nothing mounted here may reach another namespace.
mount --make-rprivate /
mount --bind "$root" "$root"

mkdir -p "$root"/{kaniko/ssl/certs,kaniko/.docker,proc,sys,dev,etc,workspace,tmp,root}
chmod 1777 "$root/tmp"
cp "$executor" "$root/kaniko/executor"
cp /etc/ssl/certs/ca-certificates.crt "$root/kaniko/ssl/certs/ca-certificates.crt"
echo '{}' >"$root/kaniko/.docker/config.json"

mount -t proc proc "$root/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
mount -t tmpfs -o mode=0755,nosuid tmpfs "$root/dev"
# name major minor
while read -r name major minor; do
    mknod -m 0666 "$root/dev/$name" c "$major" "$minor"
done <<'NODES'
null 1 3
zero 1 5
full 1 7
random 1 8
urandom 1 9
tty 5 0
NODES
mkdir "$root/dev/shm" "$root/dev/pts"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"

# The host's name service files, copied into the tmpfs /dev (kaniko and
# its RUNs write to the copies, never to the host's) and bound over files of
# the root, as a container runtime does.
mkdir "$root/dev/.host-etc"
for f in resolv.conf hosts hostname; do
    if [[ -f /etc/$f ]]; then
        cp "/etc/$f" "$root/dev/.host-etc/$f"
        touch "$root/etc/$f"
        mount --bind "$root/dev/.host-etc/$f" "$root/etc/$f"
    fi
done

mount --bind "$context" "$root/workspace"
mount -o remount,bind,ro "$root/workspace"

exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/kaniko \
    HOME=/root USER=root DOCKER_CONFIG=/kaniko/.docker SSL_CERT_DIR=/kaniko/ssl/certs \
    chroot "$root" /kaniko/executor "$@"
