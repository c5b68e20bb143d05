#!/usr/bin/env bash
# Benchmark: COPY of a large build context into one layer.
#
# For each context size N (10,000 and 100,000 files of 2-18 KiB, ~1 GiB at
# 100,000; 30,000 too with KILN_BENCH_SIZES), measures wall time, CPU time and
# peak RSS of
#   kiln --no-push --tar-path      (gzip at its default level 6, then zstd)
#   tar -c | pigz                  (gzip level 6 on every core: the floor for gzip)
#   tar -c | zstd -T0              (zstd's default level 3, as kiln's, on every
#                                   core: the floor for zstd)
# on the same tree in the same run, and prints a table with kiln/tar ratios.
# It is a benchmark, not a test: it fails only when a command fails, and
# prints a WARNING when kiln's peak RSS is over the limit.
#
# Usage: bench/copy-context.sh
# Environment:
#   KILN_BENCH_TARGET  cargo target directory (default /work/target-bench), kept
#                      apart from other builds; the first release build takes
#                      several minutes.
#   KILN_BENCH_REV     build this committed revision (e.g. HEAD), exported under
#                      $TMPDIR/kiln-bench, instead of the work tree as it is.
#   KILN_BENCH_KILN    a kiln binary to measure instead of building one.
#   KILN_BENCH_SIZES   context sizes in files (default "10000 100000").
#   KILN_BENCH_RUNS    measured runs per command; the median is reported (default 3).
#   KILN_BENCH_RSS_MB  kiln's peak RSS limit in MB (MiB, default 64).
#   TMPDIR             the trees and outputs go to $TMPDIR/kiln-bench (default /tmp);
#                      trees are generated once and reused.
#
# Runs are warm-cache: each tree is read once before its measurements so
# that every command reads it from the page cache. Wall times depend on what
# else the machine runs: the report prints the load average before and after.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
target=${KILN_BENCH_TARGET:-/work/target-bench}
sizes=${KILN_BENCH_SIZES:-10000 100000}
runs=${KILN_BENCH_RUNS:-3}
rss_limit_mb=${KILN_BENCH_RSS_MB:-64}
work=${TMPDIR:-/tmp}/kiln-bench

# shellcheck source=lib.sh
. "$here/lib.sh"
ensure_packages zstd pigz time tar python3
build_kiln

mkdir -p "$work"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
rows=()
kiln_rss=()
for n in $sizes; do
    ctx=$work/ctx-$n
    if [[ ! -f $work/ctx-$n.done ]]; then
        log "generating $ctx ($n files)"
        rm -rf "$ctx"
        python3 "$here/gen-context.py" "$ctx" "$n" >&2
        touch "$work/ctx-$n.done"
    fi
    out=$work/out-$n
    rm -rf "$out"
    mkdir -p "$out"
    log "N=$n: warming the page cache"
    tar -C "$ctx" -cf - . | cat >/dev/null

    # kiln's work directory (the layer blob before it goes into the tarball)
    # is under TMPDIR, like the tar outputs.
    measure "$n kiln-gzip" "$runs" "$out/image.tar" \
        "$kiln" --context="dir://$ctx" --no-push --tar-path="$out/image.tar" --compression=gzip
    measure "$n kiln-zstd" "$runs" "$out/image.tar" \
        "$kiln" --context="dir://$ctx" --no-push --tar-path="$out/image.tar" --compression=zstd
    measure "$n tar|pigz" "$runs" "$out/x.tar.gz" \
        bash -c 'tar -C "$1" -cf - . | pigz >"$2"' _ "$ctx" "$out/x.tar.gz"
    measure "$n tar|zstd-T0" "$runs" "$out/x.tar.zst" \
        bash -c 'tar -C "$1" -cf - . | zstd -T0 -q -o "$2"' _ "$ctx" "$out/x.tar.zst"
    rm -rf "$out"

    read -r pw _ _ _ <<<"${results[$n tar|pigz]}"
    read -r zw _ _ _ <<<"${results[$n tar|zstd-T0]}"
    for tool in kiln-gzip tar\|pigz kiln-zstd tar\|zstd-T0; do
        read -r w c r b <<<"${results[$n $tool]}"
        case $tool in
            kiln-gzip) kiln_rss+=("$n $r"); ratio=$(awk -v w="$w" -v f="$pw" 'BEGIN{printf "%.2f", w/f}') ;;
            kiln-zstd) kiln_rss+=("$n $r"); ratio=$(awk -v w="$w" -v f="$zw" 'BEGIN{printf "%.2f", w/f}') ;;
            *) ratio=- ;;
        esac
        rows+=("$(awk -v n="$n" -v t="$tool" -v w="$w" -v c="$c" -v r="$r" -v b="$b" -v q="$ratio" \
            'BEGIN{printf "%7d  %-12s %8.2f %7.2f %8.1f %8.0f  %10s", n, t, w, c, r/1024, b/1048576, q}')")
    done
done

# --- report -----------------------------------------------------------------
echo
echo "COPY of a context into one layer: median wall and CPU time of $runs warm-cache runs,"
echo "largest peak RSS; $(nproc) cores, $(date -u +%Y-%m-%d), load average before $load_before, after $(cut -d' ' -f1-3 /proc/loadavg)"
echo "cpu = user + system seconds; MB = MiB; out = the image tarball (kiln) or the compressed tar;"
echo "kiln/floor = kiln's wall time over the same compression's floor (tar | pigz, tar | zstd -T0); target at most 2"
printf '%7s  %-12s %8s %7s %8s %8s  %10s\n' N tool wall_s cpu_s rss_MB out_MB kiln/floor
printf '%s\n' "${rows[@]}"
echo

# kiln's peak RSS (the larger of its gzip and zstd runs) at the smallest and
# largest context, its growth per added file, and whether it stays under the
# limit at every size.
read -ra size_list <<<"$sizes"
first=${size_list[0]}
last=${size_list[-1]}
peak_at() { printf '%s\n' "${kiln_rss[@]}" | awk -v n="$1" '$1 == n && $2 > m {m = $2} END {printf "%.1f", m/1024}'; }
small=$(peak_at "$first")
large=$(peak_at "$last")
under_limit=yes
for entry in "${kiln_rss[@]}"; do
    read -r n r <<<"$entry"
    if ((r > rss_limit_mb * 1024)); then
        under_limit=no
        echo "WARNING: kiln peak RSS $(awk -v k="$r" 'BEGIN{printf "%.1f", k/1024}') MB at N=$n exceeds the $rss_limit_mb MB limit"
    fi
done
if [[ $first != "$last" ]]; then
    awk -v a="$small" -v b="$large" -v n1="$first" -v n2="$last" 'BEGIN{
        printf "kiln peak RSS growth: %+.1f MB from %d to %d files (%.0f bytes per added file)\n",
            b - a, n1, n2, (b - a) * 1048576 / (n2 - n1)}'
fi
echo "RSS under the limit at every size: $under_limit (kiln peak RSS at $first = $small MB, at $last = $large MB, limit $rss_limit_mb MB)"
