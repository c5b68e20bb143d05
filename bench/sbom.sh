#!/usr/bin/env bash
# Benchmark: what --sbom adds to a build. The Debian example image (an app
# script copied onto Debian bookworm minbase and a RUN, as a typical
# service image; the base made by scripts/debian-base.sh and pushed by kiln
# to a loopback registry) is built cold, without and with --sbom, the two
# interleaved run by run; prints median wall time, CPU time and peak RSS of
# each and the ratio with/without. Issue 15's target: the SBOM adds less
# than 10 % to the build's wall time. A benchmark, not a test: it fails only
# when a command fails.
#
# Usage: bench/sbom.sh
# Environment:
#   KILN_BENCH_TARGET  cargo target directory (default /work/target-bench)
#   KILN_BENCH_REV     build this committed revision instead of the work tree
#   KILN_BENCH_KILN    a kiln binary to measure instead of building one
#   KILN_BENCH_RUNS    measured runs of each case; medians are reported (default 5)
#   TMPDIR             scratch space: $TMPDIR/kiln-bench-sbom (default /tmp)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
target=${KILN_BENCH_TARGET:-/work/target-bench}
runs=${KILN_BENCH_RUNS:-5}
work=${TMPDIR:-/tmp}/kiln-bench-sbom

# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=../scripts/lib/registry.sh
. "$repo/scripts/lib/registry.sh"

ensure_packages time mmdebstrap skopeo docker-registry
build_kiln
rm -rf "$work"
mkdir -p "$work"
cp "$kiln" "$work/kiln"
kiln=$work/kiln
base_tar=$("$repo/scripts/debian-base.sh")

start_registry
trap 'stop_registry; rm -rf "$work"' EXIT

log "pushing the Debian base image (kiln, from $base_tar)"
mkdir -p "$work/base"
ln "$base_tar" "$work/base/bookworm-minbase.tar" 2>/dev/null || cp "$base_tar" "$work/base/bookworm-minbase.tar"
printf 'FROM scratch\nADD bookworm-minbase.tar /\nCMD ["bash"]\n' >"$work/base/Dockerfile"
base_ref=$REGISTRY/bench/debian:bookworm
"$kiln" --context="dir://$work/base" --destination="$base_ref" --verbosity=warn

mkdir -p "$work/app"
printf '#!/bin/sh\necho "app 1.0 on $(. /etc/os-release; echo "$PRETTY_NAME")"\n' >"$work/app/app.sh"
cat >"$work/app/Dockerfile" <<DOCKERFILE
FROM $base_ref
COPY app.sh /usr/local/bin/app
RUN chmod 0755 /usr/local/bin/app && app > /etc/app-version
CMD ["app"]
DOCKERFILE

# Each run a new tag and no cache: a cold build, as CI runs them.
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
plain_walls=() sbom_walls=() plain_cpus=() sbom_cpus=()
plain_rss=0 sbom_rss=0
for ((i = 0; i < runs; i++)); do
    for case in plain sbom; do
        flags=()
        [[ $case == sbom ]] && flags=(--sbom)
        t=$(mktemp)
        /usr/bin/time -o "$t" -f '%e %U %S %M' "$kiln" --context="dir://$work/app" \
            --destination="$REGISTRY/bench/app:$case-$i" --custom-platform=linux/amd64 \
            --verbosity=warn "${flags[@]}" >/dev/null
        read -r wall user sys rss <"$t"
        rm -f "$t"
        cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN{print u + s}')
        if [[ $case == plain ]]; then
            plain_walls+=("$wall") plain_cpus+=("$cpu")
            ((rss > plain_rss)) && plain_rss=$rss
        else
            sbom_walls+=("$wall") sbom_cpus+=("$cpu")
            ((rss > sbom_rss)) && sbom_rss=$rss
        fi
        log "$(printf 'run %d %-5s wall %6.2f s  cpu %6.2f s  peak RSS %6.1f MB' "$((i + 1))" "$case" "$wall" "$cpu" "$(mb "$rss")")"
    done
done
median() { printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"; }
pw=$(median "${plain_walls[@]}") sw=$(median "${sbom_walls[@]}")
pc=$(median "${plain_cpus[@]}") sc=$(median "${sbom_cpus[@]}")

echo
echo "Debian example image (Debian bookworm minbase, $(mb $(($(stat -c %s "$base_tar") / 1024))) MB uncompressed, + COPY + RUN),"
echo "built cold and pushed to a loopback registry, without and with --sbom interleaved; median of $runs runs;"
echo "$(nproc) cores, $(date -u +%Y-%m-%d), load average before $load_before, after $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-14s %8s %8s %8s\n' build wall_s cpu_s rss_MB
printf '%-14s %8.2f %8.2f %8s\n' "without --sbom" "$pw" "$pc" "$(mb "$plain_rss")"
printf '%-14s %8.2f %8.2f %8s\n' "with --sbom" "$sw" "$sc" "$(mb "$sbom_rss")"
ratio=$(awk -v s="$sw" -v p="$pw" 'BEGIN{printf "%.3f", s/p}')
added=$(awk -v s="$sw" -v p="$pw" 'BEGIN{printf "%.1f", (s/p - 1) * 100}')
echo "with/without: $ratio (the SBOM adds $added % wall time; target < 10 %)"
