#!/usr/bin/env bash
# Makes (once) and prints the path of a Debian bookworm minbase root
# filesystem as a tarball, for tests and benchmarks that need a real
# distribution image (dpkg database, apt, coreutils):
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/kiln/debian/bookworm-minbase.tar
#
# mmdebstrap in unshare mode builds it in a user and mount namespace of its
# own, so nothing is mounted on the host; 25 s from the Debian mirror apt
# uses, milliseconds once cached. Concurrent callers wait for one build.
set -euo pipefail

suite=bookworm
cache=${XDG_CACHE_HOME:-$HOME/.cache}/kiln/debian
tar=$cache/$suite-minbase.tar
mkdir -p "$cache"
exec {lock}>"$cache/.$suite.lock"
flock "$lock"
if [ ! -f "$tar" ]; then
  command -v mmdebstrap >/dev/null || {
    echo "debian-base: mmdebstrap is missing: run scripts/setup.sh" >&2
    exit 1
  }
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  echo "debian-base: making the $suite minbase root filesystem from $mirror (once)" >&2
  tmp=$(mktemp "$cache/.$suite-minbase.XXXXXX.tar")
  if ! mmdebstrap --quiet --mode=unshare --variant=minbase --format=tar "$suite" "$tmp" "$mirror" >&2; then
    rm -f "$tmp"
    echo "debian-base: mmdebstrap failed" >&2
    exit 1
  fi
  chmod 0644 "$tmp"
  mv "$tmp" "$tar"
fi
printf '%s\n' "$tar"
