#!/usr/bin/env bash
# Installs what kiln's demo and tests need on a Debian machine. Idempotent:
# a second run checks the packages and returns without touching apt.
set -euo pipefail

packages=(
  docker-registry   # the OCI registry the tests and the demo run on loopback
  skopeo            # independent reader of what kiln pushes and writes
  busybox-static    # content of the test base images
  apache2-utils     # htpasswd, for the authenticated-registry tests
  git               # git:// build contexts and the git daemon in tests
  openssl           # self-signed certificates for the HTTPS context tests
  python3           # free ports and the HTTPS file server in tests
  curl              # readiness checks of the loopback registry
  golang-github-moby-patternmatcher-dev  # reference behaviour for .dockerignore
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
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The registry package starts a system service on :5000; tests start their
# own instances on free loopback ports, so the shared one is not wanted.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi
