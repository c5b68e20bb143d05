#!/usr/bin/env bash
# Benchmark: a RUN-heavy Dockerfile (bench/run-heavy/Dockerfile, 12 RUNs) on
# a Debian bookworm minbase image made with mmdebstrap, built and pushed to
# a registry on loopback by
#   kiln --cache                                    (--isolation=chroot)
#   buildah bud --layers --isolation chroot && buildah push   (overlay driver)
# cold (no cache: a new cache repository for kiln, an emptied storage for
# buildah) and warm (the same build again, everything cached), in the same
# run. Prints median wall time, CPU time and peak RSS, and kiln/buildah wall
# ratios. A benchmark, not a test: it fails only when a command fails, and
# prints a WARNING when kiln's peak RSS is over the limit.
#
# Usage: bench/run-heavy.sh
# Environment:
#   KILN_BENCH_TARGET  cargo target directory (default /work/target-bench)
#   KILN_BENCH_REV     build this committed revision instead of the work tree
#   KILN_BENCH_KILN    a kiln binary to measure instead of building one
#   KILN_BENCH_RUNS    measured runs per case; the median is reported (default 3)
#   KILN_BENCH_RSS_MB  kiln's peak RSS limit in MiB (default 64)
#   TMPDIR             scratch space: $TMPDIR/kiln-bench-run (default /tmp)
# The Debian base (mmdebstrap --variant=minbase bookworm, from the mirror in
# apt's sources) is made once by scripts/debian-base.sh and kept in
# ~/.cache/kiln/debian.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
target=${KILN_BENCH_TARGET:-/work/target-bench}
runs=${KILN_BENCH_RUNS:-3}
rss_limit_mb=${KILN_BENCH_RSS_MB:-64}
work=${TMPDIR:-/tmp}/kiln-bench-run
suite=bookworm

# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=../scripts/lib/registry.sh
. "$repo/scripts/lib/registry.sh"

ensure_packages time mmdebstrap buildah skopeo docker-registry tar gzip
build_kiln
# Keep the measured binary where a rebuild during the run cannot change it.
mkdir -p "$work"
cp "$kiln" "$work/kiln"
kiln=$work/kiln

# --- the Debian base -------------------------------------------------------
# Made once by scripts/debian-base.sh (mmdebstrap minbase, cached).
base_tar=$("$repo/scripts/debian-base.sh")

start_registry
base_ref=$REGISTRY/bench/debian:$suite-minbase
buildah_root=$work/buildah-root
buildah_run=$work/buildah-run
buildah_flags=(--root "$buildah_root" --runroot "$buildah_run" --storage-driver overlay)
clean_buildah() {
    buildah "${buildah_flags[@]}" rm --all >/dev/null 2>&1 || true
    buildah "${buildah_flags[@]}" rmi --all --force >/dev/null 2>&1 || true
    rm -rf "$buildah_root" "$buildah_run"
}
trap 'clean_buildah; stop_registry' EXIT

log "pushing the base image to $base_ref"
(
    store=$work/base-store
    flags=(--root "$store/root" --runroot "$store/run" --storage-driver vfs)
    container=$(buildah "${flags[@]}" from scratch)
    buildah "${flags[@]}" add "$container" "$base_tar" / >/dev/null
    buildah "${flags[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --cmd /bin/bash "$container"
    buildah "${flags[@]}" commit --quiet --format oci "$container" bench-base >/dev/null
    buildah "${flags[@]}" push --quiet --tls-verify=false bench-base "docker://$base_ref"
    buildah "${flags[@]}" rm --all >/dev/null
    buildah "${flags[@]}" rmi --all --force >/dev/null
    rm -rf "$store"
)
base_size=$(skopeo inspect --raw --tls-verify=false "docker://$base_ref" |
    python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))')

ctx=$here/run-heavy
run_id=0
# Cold runs get a cache repository nobody wrote to, and buildah an empty
# storage; warm runs reuse what the run before them left.
measure_before_run() {
    case $1 in
    "kiln cold") run_id=$((run_id + 1)); echo "$run_id" >"$work/run-id" ;;
    "buildah cold") clean_buildah ;;
    esac
}
# The measured commands, as scripts with this run's values written in.
cat >"$work/kiln-build.sh" <<SCRIPT
exec "$kiln" --context="dir://$ctx" --destination="$REGISTRY/bench/app:kiln" \\
    --build-arg="BASE=$base_ref" --cache --cache-repo="$REGISTRY/bench/cache-\$(cat "$work/run-id")" \\
    --verbosity=warn
SCRIPT
cat >"$work/buildah-build.sh" <<SCRIPT
set -e
buildah ${buildah_flags[*]} bud --quiet --layers --isolation chroot --tls-verify=false --build-arg "BASE=$base_ref" \\
    -t bench-app "$ctx" >/dev/null
buildah ${buildah_flags[*]} push --quiet --tls-verify=false bench-app "docker://$REGISTRY/bench/app:buildah"
SCRIPT

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# Cold before warm for each tool, so each warm run has the cache its cold
# run just wrote.
measure "kiln cold" "$runs" - bash "$work/kiln-build.sh"
measure "kiln warm" "$runs" - bash "$work/kiln-build.sh"
measure "buildah cold" "$runs" - bash "$work/buildah-build.sh"
measure "buildah warm" "$runs" - bash "$work/buildah-build.sh"

# Layer counts for the report (kiln writes no empty layers).
kiln_layers=$(skopeo inspect --tls-verify=false "docker://$REGISTRY/bench/app:kiln" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["Layers"]))')
buildah_layers=$(skopeo inspect --tls-verify=false "docker://$REGISTRY/bench/app:buildah" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["Layers"]))')

# --- report -----------------------------------------------------------------
echo
echo "RUN-heavy build (bench/run-heavy/Dockerfile: 12 RUNs) on debian:$suite minbase ($(mb $((base_size / 1024))) MB compressed),"
echo "built and pushed to a loopback registry; median of $runs runs, largest peak RSS;"
echo "$(nproc) cores, $(date -u +%Y-%m-%d), load average before $load_before, after $(cut -d' ' -f1-3 /proc/loadavg)"
echo "cpu = user + system seconds; MB = MiB; image layers: kiln $kiln_layers, buildah $buildah_layers"
printf '%-6s %-8s %8s %8s %8s %14s\n' cache tool wall_s cpu_s rss_MB kiln/buildah
for temp in cold warm; do
    read -r bw _ _ _ <<<"${results[buildah $temp]}"
    for tool in kiln buildah; do
        read -r w c r _ <<<"${results[$tool $temp]}"
        ratio=-
        [[ $tool == kiln ]] && ratio=$(awk -v w="$w" -v b="$bw" 'BEGIN{printf "%.2f", w/b}')
        printf '%-6s %-8s %8.2f %8.2f %8s %14s\n' "$temp" "$tool" "$w" "$c" "$(mb "$r")" "$ratio"
    done
done
echo
ok=yes
for temp in cold warm; do
    read -r _ _ r _ <<<"${results[kiln $temp]}"
    if ((r > rss_limit_mb * 1024)); then
        ok=no
        echo "WARNING: kiln peak RSS $(mb "$r") MB ($temp) exceeds the $rss_limit_mb MB limit"
    fi
done
echo "kiln peak RSS within $rss_limit_mb MB: $ok"
