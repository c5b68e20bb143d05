#!/usr/bin/env bash
# Registers Debian qemu-user-static's interpreters with the kernel's
# binfmt_misc, so that RUN for a foreign architecture executes under
# `kiln --emulation=qemu` (and its tests can run arm64 code).
#
# Every entry is registered with the F (fix-binary) flag: the kernel opens
# the interpreter once, now, and uses that open file for every later exec,
# so an arm64 binary runs inside RUN's chroot although the image has no
# /usr/libexec/qemu-binfmt in it.
#
# The registration lines come from the package (/usr/lib/binfmt.d/*.conf
# are already in the kernel's `register` format), nothing is typed by
# hand. Idempotent: an entry that is enabled and has F is left alone; one
# without F (registered by binfmt-support without fix-binary, say) is
# replaced. Needs root; there is no systemd here to do it at boot.
#
# Arguments name the qemu targets to register (default: aarch64 arm s390x
# ppc64le).
set -euo pipefail

binfmt_dir=/proc/sys/fs/binfmt_misc
conf_dir=/usr/lib/binfmt.d
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(aarch64 arm s390x ppc64le)

fail() {
  echo "binfmt: $*" >&2
  echo "binfmt: kiln --emulation=qemu and its emulation tests need these interpreters registered" >&2
  exit 1
}

if [ ! -e "$binfmt_dir/register" ]; then
  mount -t binfmt_misc binfmt_misc "$binfmt_dir" ||
    fail "cannot mount binfmt_misc on $binfmt_dir (needs root, and a kernel with binfmt_misc)"
  echo "binfmt: mounted binfmt_misc on $binfmt_dir" >&2
fi
if [ "$(cat "$binfmt_dir/status")" != enabled ]; then
  echo 1 >"$binfmt_dir/status" || fail "cannot enable binfmt_misc ($binfmt_dir/status)"
  echo "binfmt: enabled binfmt_misc" >&2
fi

# Whether the kernel already has `entry` enabled and with fix-binary.
registered_with_f() {
  local entry=$1
  [ -r "$entry" ] && grep -qx enabled "$entry" && grep -q '^flags: .*F' "$entry"
}

for target in "${targets[@]}"; do
  name=qemu-$target
  entry=$binfmt_dir/$name
  registered_with_f "$entry" && continue
  conf=$conf_dir/$name.conf
  [ -r "$conf" ] || fail "$conf is missing: install Debian's qemu-user-static"
  line=$(grep -m1 '^:' "$conf") || fail "$conf has no registration line"
  # Fields are `:name:type:offset:magic:mask:interpreter:flags`; colons in
  # magic and mask are written \x3a, so the flags are after the last one.
  flags=${line##*:}
  case $flags in
    *F*) ;;
    *) line="${line}F" ;;
  esac
  if [ -e "$entry" ]; then
    echo "binfmt: $name is registered without the F flag or disabled; replacing it" >&2
    echo -1 >"$entry"
  fi
  if ! printf '%s' "$line" >"$binfmt_dir/register" 2>/dev/null; then
    # Another setup run may have registered it a moment ago.
    registered_with_f "$entry" || fail "the kernel refused $conf's line for $binfmt_dir/register"
  fi
  registered_with_f "$entry" || fail "$name was registered but is not enabled with the F flag"
  echo "binfmt: registered $name ($(sed -n 's/^interpreter //p' "$entry"))" >&2
done
