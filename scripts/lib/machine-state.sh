# The machine-state tripwire of the test suite: what the tests must leave as
# they found it, printed one fact a line so two readings compare with diff.
# Source this file and call machine_state > FILE before the tests and again
# after; any difference fails the run (scripts/test.sh).
#
# Watched: modes, owners and modification times of the system directories a
# hostile layer, a RUN step or a kubelet could change (an earlier unpacker
# bug set /etc to 0700 and its mtime to a test's layer time), the modes of
# the shared temporary directories (their contents change legitimately),
# the kernel settings a kubelet sets on start, BuildKit's default state
# directories and cgroups, the host and domain names.

machine_state() {
  local dir
  for dir in / /etc /usr /usr/bin /usr/lib /usr/local /usr/local/bin /var /var/lib /home /opt /srv /mnt; do
    [ -e "$dir" ] && stat -c 'dir %n %a %U:%G %Y' "$dir"
  done
  # Caches (~/.cache, ~/.cargo) may be created under /root by a first run.
  for dir in /tmp /var/tmp /dev/shm /root; do
    [ -e "$dir" ] && stat -c 'dir %n %a %U:%G' "$dir"
  done
  local key
  for key in vm/overcommit_memory kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys \
    kernel/keys/root_maxbytes net/ipv4/ip_forward net/bridge/bridge-nf-call-iptables; do
    [ -r "/proc/sys/$key" ] && printf 'sysctl %s %s\n' "$key" "$(cat "/proc/sys/$key")"
  done
  # BuildKit's default state, config and runc directories, and the cgroups
  # its RUN containers are made in: the conformance suite's buildkitd keeps
  # all of these in its temporary directory and its own cgroup parent.
  for dir in /var/lib/buildkit /etc/buildkit /run/buildkit /run/runc; do
    [ -e "$dir" ] && printf 'exists %s\n' "$dir"
  done
  for dir in /sys/fs/cgroup/buildkit /sys/fs/cgroup/*/buildkit /sys/fs/cgroup/kiln-conformance-* /sys/fs/cgroup/*/kiln-conformance-*; do
    [ -e "$dir" ] && printf 'cgroup %s\n' "$dir"
  done
  printf 'hostname %s\n' "$(cat /proc/sys/kernel/hostname)"
  printf 'domainname %s\n' "$(cat /proc/sys/kernel/domainname)"
}
