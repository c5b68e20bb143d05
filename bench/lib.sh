# Shared pieces of the benchmark scripts. Source it after setting
#   repo    the repository root
#   work    the scripts' scratch directory
#   target  the cargo target directory for kiln's release build
# It defines log, ensure_packages, build_kiln (sets $kiln), measure,
# measure_tree, median and
# mb (KiB -> MiB for reports).

log() { printf '== %s\n' "$*" >&2; }

# ensure_packages PKG...: installs the Debian packages dpkg says are missing.
ensure_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            # python3 may come from elsewhere (pyenv); only a missing command counts.
            if [[ $pkg == python3 ]] && command -v python3 >/dev/null; then continue; fi
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# build_kiln: sets $kiln to KILN_BENCH_KILN, or builds the work tree (or the
# committed revision KILN_BENCH_REV) in release mode in $target.
build_kiln() {
    if [[ -n ${KILN_BENCH_KILN:-} ]]; then
        kiln=$KILN_BENCH_KILN
        log "using $kiln (KILN_BENCH_KILN; not building)"
        return
    fi
    local src=$repo commit
    if [[ -n ${KILN_BENCH_REV:-} ]]; then
        # A committed revision, exported apart from the work tree so that
        # edits in progress there neither break nor change the build.
        commit=$(git -C "$repo" rev-parse --verify "${KILN_BENCH_REV}^{commit}")
        src=$work/src-$commit
        if [[ ! -d $src ]]; then
            rm -rf "$src.tmp"
            mkdir -p "$src.tmp"
            git -C "$repo" archive "$commit" | tar -x -C "$src.tmp"
            mv "$src.tmp" "$src"
        fi
        log "measuring commit $commit"
    fi
    log "building kiln from $src (release, CARGO_TARGET_DIR=$target; the first build takes several minutes)"
    (cd "$src" && CARGO_TARGET_DIR=$target cargo build --release --quiet -p kiln-builder --bin kiln)
    kiln=$target/release/kiln
}

# measure NAME RUNS OUTFILE CMD...: runs CMD RUNS times under GNU time and
# records "wall_s cpu_s rss_kib out_bytes" (median wall and CPU, max RSS over
# the runs) in results[]. OUTFILE is removed before each run and its size
# recorded after the last; `-` when the command writes no file (size 0).
# Before each run, `measure_before_run NAME` is called when it is defined
# (to reset state a cold run needs).
# CPU is user + system time of all threads and children: unlike wall time, it
# barely moves with the machine's load. For a pipeline run as `bash -c '…'`,
# GNU time reports the rusage of bash and its waited-for children: CPU is
# their sum, but ru_maxrss is the largest single process, not the sum.
declare -A results
measure() {
    local name=$1 n_runs=$2 out=$3
    shift 3
    local walls=() cpus=() rss_max=0 i t wall user sys rss size=0
    for ((i = 0; i < n_runs; i++)); do
        [[ $out == - ]] || rm -f "$out"
        if declare -F measure_before_run >/dev/null; then measure_before_run "$name"; fi
        t=$(mktemp)
        if ! /usr/bin/time -o "$t" -f '%e %U %S %M' "$@" >/dev/null 2>"$t.err"; then
            log "FAILED: $name"
            cat "$t.err" >&2
            rm -f "$t" "$t.err"
            return 1
        fi
        read -r wall user sys rss <"$t"
        rm -f "$t" "$t.err"
        walls+=("$wall")
        cpus+=("$(awk -v u="$user" -v s="$sys" 'BEGIN{print u + s}')")
        if ((rss > rss_max)); then rss_max=$rss; fi
    done
    local wall_median cpu_median middle=$(((n_runs + 1) / 2))
    wall_median=$(printf '%s\n' "${walls[@]}" | sort -g | sed -n "${middle}p")
    cpu_median=$(printf '%s\n' "${cpus[@]}" | sort -g | sed -n "${middle}p")
    [[ $out == - ]] || size=$(stat -c %s "$out")
    results[$name]="$wall_median $cpu_median $rss_max $size"
    log "$(printf '%-22s wall %6.2f s (runs: %s)  cpu %6.2f s  peak RSS %6.1f MB' "$name" \
        "$wall_median" "${walls[*]}" "$cpu_median" "$(mb "$rss_max")")"
}

# mb KIB: KiB as MiB with one decimal.
mb() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }

# measure_tree LOG CMD...: runs CMD once under tree-usage.py, its output in
# LOG, and sets $measured to "wall_s cpu_s rss_kib": wall time, CPU time
# and peak RSS of CMD's whole process tree, plus the processes whose pids
# are in the array measure_daemons (and their descendants), such as a
# build daemon the command is a client of (see tree-usage.py). Returns
# CMD's status.
measure_daemons=()
measure_tree() {
    local log=$1 t status=0 daemon_args=() pid
    shift
    for pid in "${measure_daemons[@]}"; do
        daemon_args+=(--daemon "$pid")
    done
    t=$(mktemp)
    python3 "$(dirname "${BASH_SOURCE[0]}")/tree-usage.py" "$t" "${daemon_args[@]}" -- "$@" >"$log" 2>&1 || status=$?
    measured=$(cat "$t")
    rm -f "$t"
    return "$status"
}

# median NUMBER...: the median (the lower middle one of an even count).
median() { printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"; }
