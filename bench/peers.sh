#!/usr/bin/env bash
# Benchmark: kiln against its peers, buildah, kaniko and BuildKit, on the
# same workloads from the same loopback registry, cold and warm, the tools
# interleaved (each repetition runs every tool on a workload in turn).
# Prints medians of wall time, CPU time and peak RSS of each build's whole
# process tree (BuildKit's daemon included) with ratios to buildah and to
# BuildKit. A benchmark, not a test: a cell whose build fails is left out
# of the table and the report says why; the script fails only when its own
# set-up does.
#
#   kiln      kiln --cache --cache-copy-layers --cache-repo=<new repository per repetition>
#             (--isolation=sandbox, the default outside kiln's image)
#   buildah   buildah bud --layers --isolation chroot + buildah push         (overlay driver)
#   kaniko    executor --cache=true --cache-copy-layers --cache-repo=<new repository per
#             repetition>, in a throw-away root in private mount and PID namespaces
#             (bench/kaniko-root.sh)
#   buildkit  buildctl build --frontend dockerfile.v0 against a buildkitd of
#             its own (OCI worker, runc, overlayfs snapshotter, host network)
#
# cold: nothing cached (a new cache repository for kiln and kaniko, an
# emptied buildah storage, a buildkitd started on an empty state directory);
# warm: the same build again right after, everything cached (kaniko starts
# from a new throw-away root each time: its cache is the registry's). kiln
# and kaniko cache COPY layers only with --cache-copy-layers; without it a
# warm build unpacks the base to redo each COPY (kiln: 9 s instead of
# 0.14 s for the Debian example here).
# Every build pulls its base from the loopback registry and pushes the image
# there.
#
# Workloads (KILN_BENCH_WORKLOADS, default all, in this order):
#   busybox       examples/multiarch on a busybox base (linux/amd64 only)
#   debian        the Debian example (COPY of a script and a RUN on Debian
#                 bookworm minbase, as bench/sbom.sh builds)
#   run-heavy     bench/run-heavy/Dockerfile (12 RUNs, no network)
#   copy          FROM scratch + COPY of KILN_BENCH_COPY_FILES files
#                 (bench/gen-context.py; default 100000, about 1 GiB)
#   apt           bench/real-world/apt: apt-get install from the Debian mirror
#   c-multistage  bench/real-world/c-multistage: gcc in a
#                 FROM --platform=$BUILDPLATFORM stage, binary on busybox
#   target        bench/real-world/target: --target=release, three stages unused
#   npm           bench/real-world/npm: node and npm from Debian, npm install
#                 from registry.npmjs.org
#
# Usage: bench/peers.sh
# Environment:
#   KILN_BENCH_WORKLOADS  workloads to run (space separated; default all above)
#   KILN_BENCH_TOOLS      tools to run (default "kiln buildah kaniko buildkit")
#   KILN_BENCH_RUNS       repetitions; medians are reported (default 3)
#   KILN_BENCH_COPY_FILES files in the copy workload's context (default 100000;
#                         e.g. 2000 for a smoke run)
#   KILN_BENCH_TARGET     cargo target directory (default /work/target-bench)
#   KILN_BENCH_REV        build this committed revision of kiln instead of the work tree
#   KILN_BENCH_KILN       a kiln binary to measure instead of building one
#   KILN_BENCH_KILN_FLAGS more flags for kiln (space separated), e.g. --cache-copy-layers
#   KILN_BENCH_LOGS       keep every build's output in this directory (default: removed)
#   KILN_BENCH_SAMPLE_MS  RSS sampling interval in ms (default 20; tree-usage.py)
#   TMPDIR                scratch space: $TMPDIR/kiln-bench-peers (default /tmp)
# The Debian base is made once by scripts/debian-base.sh; kaniko, BuildKit
# and runc are built once by scripts/tools.sh (Go module proxy). The copy
# workload's context is generated once and kept in
# $TMPDIR/kiln-bench-peers/ctx-copy-N; everything else in the scratch
# directory is removed at exit, and every process and mount the script
# made is gone.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
target=${KILN_BENCH_TARGET:-/work/target-bench}
runs=${KILN_BENCH_RUNS:-3}
all_workloads="busybox debian run-heavy copy apt c-multistage target npm"
all_tools="kiln buildah kaniko buildkit"
read -ra workloads <<<"${KILN_BENCH_WORKLOADS:-$all_workloads}"
read -ra tools <<<"${KILN_BENCH_TOOLS:-$all_tools}"
copy_files=${KILN_BENCH_COPY_FILES:-100000}
read -ra kiln_flags <<<"${KILN_BENCH_KILN_FLAGS:-}"
scratch=${TMPDIR:-/tmp}/kiln-bench-peers
work=$scratch/run

# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=../scripts/lib/registry.sh
. "$repo/scripts/lib/registry.sh"

for w in "${workloads[@]}"; do
    [[ " $all_workloads " == *" $w "* ]] || { echo "peers: unknown workload '$w' (known: $all_workloads)" >&2; exit 2; }
done
for t in "${tools[@]}"; do
    [[ " $all_tools " == *" $t "* ]] || { echo "peers: unknown tool '$t' (known: $all_tools)" >&2; exit 2; }
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "peers: KILN_BENCH_RUNS must be a positive number" >&2; exit 2; }
[[ $copy_files =~ ^[1-9][0-9]*$ ]] || { echo "peers: KILN_BENCH_COPY_FILES must be a positive number" >&2; exit 2; }
selected() { [[ " ${tools[*]} " == *" $1 "* ]]; }
if [[ $(id -u) != 0 ]]; then
    echo "peers: needs root (buildkitd, buildah's overlay storage, kaniko's throw-away root, kiln's sandbox)" >&2
    exit 1
fi

ensure_packages time mmdebstrap buildah skopeo docker-registry python3 util-linux ca-certificates curl
rm -rf "$work"
mkdir -p "$work"/{logs,cmd}
if selected kiln; then
    build_kiln
    # Keep the measured binary where a rebuild during the run cannot change it.
    cp "$kiln" "$work/kiln"
    kiln=$work/kiln
fi
peer_tools=()
selected kaniko && peer_tools+=(kaniko)
selected buildkit && peer_tools+=(buildkit runc)
if ((${#peer_tools[@]})); then
    log "peer tools: scripts/tools.sh ${peer_tools[*]} (built once from the Go module proxy, minutes)"
    IFS=: read -ra peer_dirs <<<"$("$repo/scripts/tools.sh" "${peer_tools[@]}")"
    for i in "${!peer_tools[@]}"; do
        case ${peer_tools[$i]} in
        kaniko) kaniko_executor=${peer_dirs[$i]}/executor ;;
        buildkit) buildkit_bin=${peer_dirs[$i]} ;;
        runc) runc_bin=${peer_dirs[$i]}/runc ;;
        esac
    done
fi
base_tar=$("$repo/scripts/debian-base.sh")
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
if [[ -z $mirror ]]; then
    mirror=$(awk '$1 == "deb" && $2 !~ /^\[/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}
host_mnt_ns=$(readlink /proc/self/ns/mnt)

# --- state of the tools, and the clean-up -----------------------------------
buildah_flags=(--root "$work/buildah/root" --runroot "$work/buildah/run" --storage-driver overlay)
# Every buildah command runs in a mount namespace of its own, so the
# overlay mounts of its storage never reach the host's mount table.
buildah_ns() { unshare --mount --propagation private -- buildah "$@"; }
clean_buildah() {
    buildah_ns "${buildah_flags[@]}" rm --all >/dev/null 2>&1 || true
    buildah_ns "${buildah_flags[@]}" rmi --all --force >/dev/null 2>&1 || true
    rm -rf "$work/buildah"
}

bk_dir=$work/buildkit
bk_pid=
bk_cgroup=kiln-bench-peers-$$
# bk_start: a buildkitd on an empty state directory, in a mount namespace of
# its own, listening on a unix socket only; its RUN containers' cgroups go
# under $bk_cgroup and runc keeps its state in $bk_dir.
bk_start() {
    rm -rf "$bk_dir"
    mkdir -p "$bk_dir"/{bin,tmp,runc-state,docker-config}
    printf '#!/bin/sh\nexec %q --root %q "$@"\n' "$runc_bin" "$bk_dir/runc-state" >"$bk_dir/bin/runc"
    chmod 0755 "$bk_dir/bin/runc"
    cat >"$bk_dir/buildkitd.toml" <<TOML
root = "$bk_dir/root"
[grpc]
  address = ["unix://$bk_dir/buildkitd.sock"]
[otel]
  socketPath = "$bk_dir/otel-grpc.sock"
[cdi]
  disabled = true
[history]
  maxEntries = 0
[worker.oci]
  enabled = true
  snapshotter = "overlayfs"
  networkMode = "host"
  gc = false
  defaultCgroupParent = "$bk_cgroup"
[worker.containerd]
  enabled = false
[registry."$REGISTRY"]
  http = true
  insecure = true
TOML
    # unshare execs buildkitd: $! is the daemon.
    env -u OTEL_EXPORTER_OTLP_ENDPOINT -u OTEL_TRACES_EXPORTER -u BUILDKIT_DEBUG \
        PATH="$bk_dir/bin:$buildkit_bin:$PATH" TMPDIR="$bk_dir/tmp" DOCKER_CONFIG="$bk_dir/docker-config" \
        unshare --mount --propagation private -- "$buildkit_bin/buildkitd" --config "$bk_dir/buildkitd.toml" \
        </dev/null >"$bk_dir/buildkitd.log" 2>&1 &
    bk_pid=$!
    local i
    for ((i = 0; i < 300; i++)); do
        if ! kill -0 "$bk_pid" 2>/dev/null; then
            echo "peers: buildkitd exited; its log:" >&2
            cat "$bk_dir/buildkitd.log" >&2
            bk_pid=
            return 1
        fi
        if "$buildkit_bin/buildctl" --addr "unix://$bk_dir/buildkitd.sock" debug workers 2>/dev/null | grep -q .; then
            return 0
        fi
        sleep 0.2
    done
    echo "peers: buildkitd did not answer within a minute; its log:" >&2
    cat "$bk_dir/buildkitd.log" >&2
    return 1
}
bk_stop() {
    if [[ -n $bk_pid ]]; then
        kill -TERM "$bk_pid" 2>/dev/null || true
        local i
        for ((i = 0; i < 300; i++)); do
            kill -0 "$bk_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$bk_pid" 2>/dev/null || true
        wait "$bk_pid" 2>/dev/null || true
        bk_pid=
    fi
    # The cgroups runc made for RUN containers, wherever the hierarchies put
    # them, deepest first.
    find /sys/fs/cgroup -maxdepth 6 -type d -name "$bk_cgroup" 2>/dev/null | while read -r d; do
        find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    rm -rf "$bk_dir"
}

kaniko_root=$work/kaniko-root
cleanup() {
    local status=$?
    set +e
    bk_stop
    clean_buildah
    rm -rf "$kaniko_root"
    stop_registry
    if [[ -n ${KILN_BENCH_LOGS:-} ]] && [[ -d $work/logs ]]; then
        mkdir -p "$KILN_BENCH_LOGS"
        cp -R "$work/logs/." "$KILN_BENCH_LOGS/"
    fi
    rm -rf "$work"
    rmdir "$scratch" 2>/dev/null
    local left
    left=$(grep -F "$scratch" /proc/self/mountinfo)
    [[ -z $left ]] || echo "peers: WARNING: mounts left under $scratch:"$'\n'"$left" >&2
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_registry
# start_registry sets its own EXIT trap; cleanup stops the registry too.
trap cleanup EXIT

# --- base images ---------------------------------------------------------------
# Pushed once per run with buildah (vfs driver, in a mount namespace of its
# own): one layer each, gzip.
push_base() {
    local ref=$1 source=$2
    shift 2
    local store=$work/base-store
    local flags=(--root "$store/root" --runroot "$store/run" --storage-driver vfs)
    local container
    container=$(buildah_ns "${flags[@]}" from scratch)
    buildah_ns "${flags[@]}" add "$container" "$source" / >/dev/null
    buildah_ns "${flags[@]}" config "$@" "$container"
    buildah_ns "${flags[@]}" commit --quiet --format oci "$container" bench-base >/dev/null
    buildah_ns "${flags[@]}" push --quiet --tls-verify=false bench-base "docker://$ref"
    buildah_ns "${flags[@]}" rm --all >/dev/null
    buildah_ns "${flags[@]}" rmi --all --force >/dev/null
    rm -rf "$store"
}
debian_ref=$REGISTRY/bench/debian:bookworm-minbase
busybox_ref=$REGISTRY/bench/busybox:latest
log "pushing the bases: $debian_ref (from $base_tar), $busybox_ref (the host's static busybox)"
push_base "$debian_ref" "$base_tar" \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/bash
mkdir -p "$work/busybox-root/bin"
cp /bin/busybox "$work/busybox-root/bin/busybox"
for applet in sh cat echo printf mkdir chmod uname ls; do
    ln -s busybox "$work/busybox-root/bin/$applet"
done
push_base "$busybox_ref" "$work/busybox-root" --env PATH=/bin --cmd /bin/sh
rm -rf "$work/busybox-root"

# --- workloads -------------------------------------------------------------------
# Each sets ctx (the context directory, its Dockerfile at the top), args
# (build arguments KEY=VALUE) and build_target (empty: the last stage).
declare -A wl_ctx wl_args wl_target
for w in "${workloads[@]}"; do
    args=() build_target=
    case $w in
    busybox)
        ctx=$repo/examples/multiarch
        args=("BASE=$busybox_ref")
        ;;
    debian)
        ctx=$work/ctx-debian
        mkdir -p "$ctx"
        # shellcheck disable=SC2016 # expanded by the image's shell
        printf '#!/bin/sh\necho "app 1.0 on $(. /etc/os-release; echo "$PRETTY_NAME")"\n' >"$ctx/app.sh"
        cat >"$ctx/Dockerfile" <<'DOCKERFILE'
ARG BASE
FROM ${BASE}
COPY app.sh /usr/local/bin/app
RUN chmod 0755 /usr/local/bin/app && app > /etc/app-version
CMD ["app"]
DOCKERFILE
        args=("BASE=$debian_ref")
        ;;
    run-heavy)
        ctx=$here/run-heavy
        args=("BASE=$debian_ref")
        ;;
    copy)
        ctx=$scratch/ctx-copy-$copy_files
        if [[ ! -f $ctx.done ]]; then
            log "generating $ctx ($copy_files files, once)"
            rm -rf "$ctx"
            python3 "$here/gen-context.py" "$ctx" "$copy_files" >&2
            touch "$ctx.done"
        fi
        ;;
    apt)
        ctx=$here/real-world/$w
        args=("BASE=$debian_ref" "MIRROR=$mirror")
        ;;
    npm)
        # The build machine's own certificate authorities go into the
        # image: where a TLS-intercepting proxy stands between this machine
        # and registry.npmjs.org (as here), npm in the build must trust it.
        ctx=$work/ctx-npm
        cp -R "$here/real-world/npm" "$ctx"
        mkdir -p "$ctx/local-ca"
        if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
            cp /usr/local/share/ca-certificates/*.crt "$ctx/local-ca/"
            log "npm: the build machine's local CAs go into the image: $(cd "$ctx/local-ca" && echo *.crt)"
        fi
        args=("BASE=$debian_ref" "MIRROR=$mirror")
        ;;
    c-multistage)
        ctx=$here/real-world/$w
        args=("BASE=$debian_ref" "RUNTIME=$busybox_ref" "MIRROR=$mirror")
        ;;
    target)
        ctx=$here/real-world/$w
        args=("BASE=$debian_ref")
        build_target=release
        ;;
    esac
    wl_ctx[$w]=$ctx
    wl_args[$w]="${args[*]}"
    wl_target[$w]=$build_target
done

# quoted WORD...: the words quoted for a script, space separated.
quoted() { (($#)) && printf ' %q' "$@"; return 0; }

# write_command TOOL WORKLOAD: $work/cmd/TOOL-WORKLOAD.sh, the build as a
# script whose first argument is the repetition (it names the cache
# repositories).
write_command() {
    local tool=$1 w=$2
    local ctx=${wl_ctx[$w]} build_target=${wl_target[$w]} a
    local -a args flags=()
    read -ra args <<<"${wl_args[$w]}"
    local dest=$REGISTRY/bench/$w:$tool
    local cache_repo=$REGISTRY/bench/cache-$tool-$w-
    local script=$work/cmd/$tool-$w.sh
    {
        echo 'set -euo pipefail'
        case $tool in
        kiln)
            for a in "${args[@]}"; do flags+=("--build-arg=$a"); done
            [[ -z $build_target ]] || flags+=("--target=$build_target")
            [[ " ${kiln_flags[*]} " == *" --verbosity"* ]] || flags+=(--verbosity=warn)
            echo "exec$(quoted "$kiln" "--context=dir://$ctx" "--destination=$dest" --cache --cache-copy-layers \
                "${flags[@]}" "${kiln_flags[@]}") --cache-repo=$(printf %q "$cache_repo")\"\$1\""
            ;;
        buildah)
            for a in "${args[@]}"; do flags+=(--build-arg "$a"); done
            [[ -z $build_target ]] || flags+=(--target "$build_target")
            # The build and the push in one mount namespace of their own.
            {
                echo 'set -e'
                echo "buildah$(quoted "${buildah_flags[@]}" bud --quiet --layers --isolation chroot \
                    --tls-verify=false "${flags[@]}" -t "bench-$w" "$ctx") >/dev/null"
                echo "buildah$(quoted "${buildah_flags[@]}" push --quiet --tls-verify=false "bench-$w" "docker://$dest")"
            } >"$script.inner"
            echo "exec unshare --mount --propagation private -- bash$(quoted "$script.inner")"
            ;;
        kaniko)
            for a in "${args[@]}"; do flags+=("--build-arg=$a"); done
            [[ -z $build_target ]] || flags+=("--target=$build_target")
            echo "exec unshare --mount --pid --fork --propagation private --$(quoted bash "$here/kaniko-root.sh" \
                "$host_mnt_ns" "$kaniko_root" "$kaniko_executor" "$ctx" \
                --context=dir:///workspace --dockerfile=/workspace/Dockerfile "--destination=$dest" \
                --cache=true --cache-copy-layers --insecure --insecure-pull --skip-tls-verify --skip-tls-verify-pull \
                "--insecure-registry=$REGISTRY" --force --verbosity=warn "${flags[@]}") --cache-repo=$(printf %q "$cache_repo")\"\$1\""
            ;;
        buildkit)
            for a in "${args[@]}"; do flags+=("--opt=build-arg:$a"); done
            [[ -z $build_target ]] || flags+=("--opt=target=$build_target")
            echo "export DOCKER_CONFIG=$(printf %q "$bk_dir/docker-config")"
            echo "exec$(quoted "$buildkit_bin/buildctl" --addr "unix://$bk_dir/buildkitd.sock" build \
                --progress=plain --frontend=dockerfile.v0 "--local=context=$ctx" "--local=dockerfile=$ctx" \
                "--output=type=image,name=$dest,push=true,registry.insecure=true" "${flags[@]}")"
            ;;
        esac
    } >"$script"
}

# prepare TOOL CACHE REP: what a cold or warm run of TOOL needs first.
prepare() {
    local tool=$1 cache=$2
    case $tool in
    buildah) [[ $cache == warm ]] || clean_buildah ;;
    kaniko)
        rm -rf "$kaniko_root"
        mkdir -p "$kaniko_root"
        ;;
    buildkit)
        if [[ $cache == cold ]] || [[ -z $bk_pid ]]; then
            bk_stop
            bk_start
        fi
        ;;
    esac
}

# --- the runs ------------------------------------------------------------------
for w in "${workloads[@]}"; do
    for t in "${tools[@]}"; do
        write_command "$t" "$w"
    done
done

declare -A cell_wall=() cell_cpu=() cell_rss=() missing=()
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$SECONDS
for ((rep = 1; rep <= runs; rep++)); do
    for w in "${workloads[@]}"; do
        for t in "${tools[@]}"; do
            if [[ -n ${missing[$w $t]:-} ]]; then
                continue
            fi
            for cache in cold warm; do
                key="$w $cache $t"
                prepare "$t" "$cache"
                measure_daemons=()
                [[ $t != buildkit ]] || measure_daemons=("$bk_pid")
                logfile=$work/logs/$rep-$w-$t-$cache.log
                if measure_tree "$logfile" bash "$work/cmd/$t-$w.sh" "$rep"; then
                    read -r wall cpu rss <<<"$measured"
                    cell_wall[$key]+="$wall "
                    cell_cpu[$key]+="$cpu "
                    cell_rss[$key]+="$rss "
                    log "$(printf 'run %d %-12s %-4s %-8s wall %7.2f s  cpu %7.2f s  peak RSS %7.1f MB' \
                        "$rep" "$w" "$cache" "$t" "$wall" "$cpu" "$(mb "$rss")")"
                else
                    # The last line that says error, else the last line.
                    reason=$(grep -i 'error' "$logfile" | tail -n 1 | cut -c1-200)
                    [[ -n $reason ]] || reason=$(grep -v '^[[:space:]]*$' "$logfile" | tail -n 1 | cut -c1-200)
                    missing[$w $t]="$cache build failed in run $rep: $reason"
                    log "FAILED: run $rep $w $cache $t; the end of its log:"
                    tail -n 25 "$logfile" >&2
                    break
                fi
            done
            [[ $t != kaniko ]] || rm -rf "$kaniko_root"
        done
    done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report ----------------------------------------------------------------------
# ratio_median KEY_A KEY_B ARRAY: the median over repetitions of A/B, from
# the repetitions both have (their lists line up while neither failed: a
# tool that fails is not run again).
ratio_median() {
    local -n values=$3
    local -a a b r=()
    read -ra a <<<"${values[$1]:-}"
    read -ra b <<<"${values[$2]:-}"
    local i n=$((${#a[@]} < ${#b[@]} ? ${#a[@]} : ${#b[@]}))
    ((n)) || { echo -; return; }
    for ((i = 0; i < n; i++)); do
        r+=("$(awk -v x="${a[$i]}" -v y="${b[$i]}" 'BEGIN{ if (y > 0) printf "%.2f", x / y; else print "inf" }')")
    done
    median "${r[@]}"
}
echo
echo "Peers: kiln, buildah, kaniko and BuildKit interleaved, each build pulling its base from and pushing"
echo "to a loopback registry; median of $runs repetitions (a cell from fewer when a later build failed);"
echo "$(nproc) cores, $(date -u +%Y-%m-%d), load average before $load_before, after $load_after, $(((SECONDS - started) / 60)) min"
echo "wall and cpu (user + system of the whole process tree, BuildKit's daemon included) in seconds;"
echo "rss = peak of the summed RSS of the process tree in MiB; x/bah, x/bk = median per-repetition"
echo "ratio to buildah and to BuildKit of wall (w), cpu (c) and rss (r)"
printf '%-12s %-4s %-8s %8s %8s %8s  %6s %6s  %6s %6s  %6s %6s\n' \
    workload cache tool wall_s cpu_s rss_MB w/bah w/bk c/bah c/bk r/bah r/bk
for w in "${workloads[@]}"; do
    for cache in cold warm; do
        for t in "${tools[@]}"; do
            key="$w $cache $t"
            if [[ -z ${cell_wall[$key]:-} ]]; then
                printf '%-12s %-4s %-8s %8s %8s %8s  (missing)\n' "$w" "$cache" "$t" - - -
                continue
            fi
            # shellcheck disable=SC2086 # lists of numbers
            wall=$(median ${cell_wall[$key]}) cpu=$(median ${cell_cpu[$key]}) rss=$(median ${cell_rss[$key]})
            printf '%-12s %-4s %-8s %8.2f %8.2f %8s  %6s %6s  %6s %6s  %6s %6s\n' "$w" "$cache" "$t" \
                "$wall" "$cpu" "$(mb "$rss")" \
                "$(ratio_median "$key" "$w $cache buildah" cell_wall)" "$(ratio_median "$key" "$w $cache buildkit" cell_wall)" \
                "$(ratio_median "$key" "$w $cache buildah" cell_cpu)" "$(ratio_median "$key" "$w $cache buildkit" cell_cpu)" \
                "$(ratio_median "$key" "$w $cache buildah" cell_rss)" "$(ratio_median "$key" "$w $cache buildkit" cell_rss)"
        done
    done
done
if ((${#missing[@]})); then
    echo
    echo "Missing cells:"
    for k in "${!missing[@]}"; do
        echo "  $k: ${missing[$k]}"
    done
fi
