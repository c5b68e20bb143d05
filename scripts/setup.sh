#!/usr/bin/env bash
# Installs what kiln's demo and tests need on a Debian machine. Idempotent:
# a second run checks the packages and returns without touching apt.
set -euo pipefail

packages=(
  docker-registry   # the OCI registry the tests and the demo run on loopback
  skopeo            # independent reader of what kiln pushes and writes
  buildah           # the second reference builder of the conformance suite (BuildKit, the first, comes from scripts/tools.sh)
  busybox-static    # content of the test base images
  qemu-user-static  # RUN for arm64 and others under --emulation=qemu (scripts/binfmt.sh)
  apache2-utils     # htpasswd, for the authenticated-registry tests
  git               # git:// build contexts and the git daemon in tests
  openssl           # self-signed certificates for the HTTPS context tests
  python3           # free ports and the HTTPS file server in tests
  curl              # readiness checks of the loopback registry
  golang-github-moby-patternmatcher-dev  # reference behaviour for .dockerignore
  etcd-server       # the e2e control plane's store (its apiserver is built from source)
  libseccomp-dev    # the e2e real node's runc (built from the Go module proxy by scripts/tools.sh) links libseccomp
  pkg-config        # … and finds it with pkg-config
  containernetworking-plugins  # the e2e real node's pod network (bridge, host-local, loopback)
  gcc               # … compiles its pause program statically (and run_sandbox.rs its escape program)
  libc6-dev         # … against glibc's static libc.a
  iproute2          # … creates its bridge (ip)
  iptables          # the real-node test checks no rule is left behind (iptables-save)
  g++               # libFuzzer, which fuzz/run.sh builds for the fuzz targets
  mmdebstrap        # a Debian root filesystem for the SBOM tests (scripts/debian-base.sh)
)

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  # Other engineers' setup runs may hold the dpkg lock for a while.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
    --no-install-recommends "${missing[@]}" >/dev/null
fi

# qemu-user interpreters registered with binfmt_misc (fix-binary), for
# --emulation=qemu and the tests that run arm64 code. Where the kernel
# refuses (no root, a container without the mount), the rest of the set-up
# still runs and those tests fail saying why.
binfmt=("$(dirname "$0")/binfmt.sh")
[ "$(id -u)" -eq 0 ] || binfmt=(sudo "${binfmt[@]}")
if ! "${binfmt[@]}"; then
  echo "setup: WARNING: qemu-user interpreters are not registered; builder/tests/run_emulation.rs will fail" >&2
fi

# An arm64 busybox for the test fixtures' linux/arm64 image: Debian's own
# busybox-static for arm64, at the version of the host's amd64 one when
# Debian has it. Fetched with a private apt state (lists and archives in a
# temporary directory, architecture arm64), so the machine's apt
# configuration and package lists are not changed; the extracted binary is
# cached, and a second run does not touch apt.
cache_dir=${KILN_CACHE_DIR:-$HOME/.cache/kiln}
arm64_dir=$cache_dir/busybox-static/arm64
host_version=$(dpkg-query -W -f='${Version}' busybox-static)
if [ ! -x "$arm64_dir/busybox" ] || [ "$(cat "$arm64_dir/host-version" 2>/dev/null)" != "$host_version" ]; then
  echo "setup: fetching Debian's busybox-static for arm64 into $arm64_dir" >&2
  mkdir -p "$cache_dir/busybox-static"
  work=$(mktemp -d "$cache_dir/busybox-static/.arm64.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/out"
  apt_arm64=(
    -o APT::Architecture=arm64 -o APT::Architectures::=arm64
    -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache"
    -o Dir::State::status=/dev/null -o Debug::NoLocking=1
    -o APT::Sandbox::User=root -o Acquire::Languages=none
    -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
    -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
    -o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false
  )
  apt-get -qq "${apt_arm64[@]}" update
  (
    cd "$work/out"
    apt-get -qq "${apt_arm64[@]}" download "busybox-static:arm64=$host_version" 2>/dev/null ||
      apt-get -qq "${apt_arm64[@]}" download busybox-static:arm64
  )
  deb=$(echo "$work"/out/busybox-static_*_arm64.deb)
  dpkg-deb -x "$deb" "$work/root"
  mkdir -p "$work/result"
  cp "$work/root/bin/busybox" "$work/result/busybox"
  dpkg-deb -f "$deb" Version >"$work/result/version"
  printf '%s\n' "$host_version" >"$work/result/host-version"
  rm -rf "$arm64_dir"
  # Renamed into place whole, so an interrupted run never leaves a binary
  # without its version files.
  mv -T "$work/result" "$arm64_dir"
  echo "setup: arm64 busybox $(cat "$arm64_dir/version") cached in $arm64_dir" >&2
fi

# The conformance suite's first reference, BuildKit, and the runc it runs
# RUN with (e2e/conformance/README.md): built from the Go module proxy once
# and cached by version (scripts/tools.sh), so a test run finds them in
# milliseconds. Without Go here the test builds them itself, or says why
# it cannot.
if command -v go >/dev/null 2>&1; then
  "$(dirname "$0")/tools.sh" buildkit runc >/dev/null
else
  echo "setup: WARNING: go is not installed; e2e/tests/conformance.rs needs it to build BuildKit and runc" >&2
fi

# skopeo and buildah, run as root, keep a blob-info cache in
# /var/lib/containers/cache and create it on first use. Created here, with
# the tools, so the tests only ever write a cache file of an installed tool
# and never add a directory to /var/lib (which scripts/test.sh watches).
if [ "$(id -u)" -eq 0 ] && [ ! -d /var/lib/containers/cache ]; then
  install -d -m 0700 /var/lib/containers /var/lib/containers/cache
fi

# The registry and etcd packages start system services (:5000, :2379);
# tests start their own instances on free loopback ports, so the shared
# ones are not wanted.
for service in docker-registry etcd; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$service" 2>/dev/null; then
    systemctl stop "$service" || true
  fi
done
