#!/usr/bin/env bash
# Run Redis's own TCL test suite in external-server mode twice, with identical
# options: once directly against a redis-server, once through resp-sidecar set
# up as a transparent proxy (no namespaces, deny_commands = []), and print the
# results side by side, with the tests that fail only through the sidecar.
#
# The suite comes from the Debian source package of the installed
# redis-server (`apt-get source redis=<installed version>`); it is fetched
# into DIR when DIR has no redis-*/runtest yet, so reruns reuse it. That needs
# dpkg-dev and a deb-src entry in the apt sources; --add-deb-src adds one
# (root only) mirroring the existing Debian `deb` entries.
#
# Each unit runs against a fresh redis-server (and, for the sidecar run, a
# fresh sidecar in front of it) on free loopback ports, so one unit's leftover
# state or a crash cannot leak into the next. Both runs use the same
# redis-server options as Redis's own external-server CI job.
#
# Usage: scripts/redis-testsuite.sh [options] [-- extra runtest args]
#   --dir DIR           suite location (default $REDIS_TESTSUITE_DIR or
#                       ~/.cache/resp-sidecar/redis-testsuite)
#   --out DIR           logs and results (default DIR/results/<timestamp>)
#   --sidecar BIN       sidecar binary (default $SIDECAR_BIN, else
#                       target/release/resp-sidecar, built if missing)
#   --singledb          pass --singledb to the suite: no SELECT 9, so commands
#                       travel on the shared upstream connections instead of
#                       the connection pinned by SELECT
#   --units "U1 U2"     only these units (default: every unit of the suite)
#   --skipunit U        skip a unit (repeatable)
#   --tags TAGS         runtest --tags value (default "-slow -needs:repl":
#                       tests tagged needs:repl attach to the replication
#                       stream with SYNC, which cannot pass through the
#                       sidecar and would hang each such unit)
#   --unit-timeout SEC  wall-clock limit per unit and run (default 900)
#   --parallel          run the direct and the sidecar pass at the same time
#                       (faster; timing-sensitive tests may get noisier)
#   --add-deb-src       add a deb-src entry if apt has none (root only)
#   --only MODE         run only "direct" or "sidecar" (no comparison)
#   --keep-repl-stream-tests
#                       do not skip the tests that read the replication
#                       stream with SYNC (they hang through the sidecar until
#                       --unit-timeout)
# Exit status: 0 when no test fails only through the sidecar, 1 otherwise,
# 2 on a setup error.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${REDIS_TESTSUITE_DIR:-${HOME:-/tmp}/.cache/resp-sidecar/redis-testsuite}"
OUT=""
SIDECAR="${SIDECAR_BIN:-}"
SINGLEDB=0
UNITS=""
SKIPUNITS=()
TAGS="-slow -needs:repl"
UNIT_TIMEOUT=900
PARALLEL=0
ADD_DEB_SRC=0
ONLY=""
SKIP_REPL_STREAM=1
EXTRA=()
READY_TIMEOUT="${READY_TIMEOUT:-30}"

log() { printf '[redis-testsuite] %s\n' "$*" >&2; }
die() { log "$*"; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --dir) DIR="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --sidecar) SIDECAR="$2"; shift 2 ;;
        --singledb) SINGLEDB=1; shift ;;
        --units) UNITS="$2"; shift 2 ;;
        --skipunit) SKIPUNITS+=("$2"); shift 2 ;;
        --tags) TAGS="$2"; shift 2 ;;
        --unit-timeout) UNIT_TIMEOUT="$2"; shift 2 ;;
        --parallel) PARALLEL=1; shift ;;
        --add-deb-src) ADD_DEB_SRC=1; shift ;;
        --only) ONLY="$2"; shift 2 ;;
        --keep-repl-stream-tests) SKIP_REPL_STREAM=0; shift ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option: $1 (see --help)" ;;
    esac
done
case "$ONLY" in ""|direct|sidecar) ;; *) die "--only takes direct or sidecar" ;; esac

# ---------------------------------------------------------------- processes
# Every process this script starts is recorded here and stopped on exit.
PIDS=()
RUNNER=""
# Stop everything recorded in PIDS: TERM first, KILL after 5 s.
cleanup() {
    local pid i
    # runtest runs under `timeout`, which leads its own process group.
    [ -n "$RUNNER" ] && kill -TERM -- "-$RUNNER" 2>/dev/null
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] || continue
        for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
    RUNNER=""
    return 0
}
trap cleanup EXIT
trap 'trap - INT TERM; exit 130' INT TERM

forget_pid() {
    local keep=() p
    for p in "${PIDS[@]:-}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]:-}")
}

stop_pid() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    forget_pid "$1"
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A free loopback port below the kernel's ephemeral range (outgoing
# connections take ports there, which a connect probe cannot see) and away
# from the ports the suite uses for itself (21079-21111, 23079-23111 and
# those plus 10000). Each pass draws from its own range (PORT_BASE) so
# parallel passes never pick the same port.
PORT_BASE=24000
free_port() {
    local p tries=0
    while [ $tries -lt 200 ]; do
        p=$(( PORT_BASE + RANDOM % 3000 ))
        if ! listening "$p"; then
            echo "$p"; return 0
        fi
        tries=$((tries + 1))
    done
    die "no free port found"
}

# Wait until PING on port $1 answers PONG, or fail after READY_TIMEOUT.
wait_pong() {
    local port="$1" pid="$2" what="$3" deadline=$((SECONDS + READY_TIMEOUT))
    while [ $SECONDS -lt $deadline ]; do
        kill -0 "$pid" 2>/dev/null || { log "$what exited during startup"; return 1; }
        if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = "PONG" ]; then
            return 0
        fi
        sleep 0.1
    done
    log "$what not ready on port $port after ${READY_TIMEOUT}s"
    return 1
}

# ------------------------------------------------------------------- fetch
have_deb_src() {
    grep -rqsE '^(deb-src|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null
}

add_deb_src() {
    [ "$(id -u)" -eq 0 ] || die "--add-deb-src needs root"
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        grep -q '^Types: deb$' "$f" && sed -i 's/^Types: deb$/Types: deb deb-src/' "$f"
    done
    if [ -f /etc/apt/sources.list ] && ! have_deb_src; then
        grep -E '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' \
            > /etc/apt/sources.list.d/resp-sidecar-deb-src.list
    fi
    have_deb_src || die "could not add a deb-src entry"
    apt-get update -qq
}

fetch_suite() {
    SUITE="$(ls -d "$DIR"/redis-*/ 2>/dev/null | head -1)"
    SUITE="${SUITE%/}"
    if [ -n "$SUITE" ] && [ -x "$SUITE/runtest" ]; then
        return 0
    fi
    command -v dpkg-source >/dev/null || die "dpkg-source missing: apt-get install dpkg-dev"
    if ! have_deb_src; then
        [ "$ADD_DEB_SRC" = 1 ] || die "no deb-src entry in the apt sources; rerun with --add-deb-src (root) or add one"
        add_deb_src
    fi
    local version
    version="$(dpkg-query -W -f='${Version}' redis-server 2>/dev/null || true)"
    mkdir -p "$DIR"
    log "fetching the redis source package ${version:+$version }into $DIR"
    if [ -n "$version" ]; then
        (cd "$DIR" && apt-get source -qq "redis=$version") \
            || (cd "$DIR" && apt-get source -qq redis) || die "apt-get source redis failed"
    else
        (cd "$DIR" && apt-get source -qq redis) || die "apt-get source redis failed"
    fi
    SUITE="$(ls -d "$DIR"/redis-*/ | head -1)"
    SUITE="${SUITE%/}"
    [ -x "$SUITE/runtest" ] || die "no runtest in $SUITE"
}

# The suite calls src/redis-cli, src/redis-benchmark, ... by path; point
# those at the installed binaries instead of building Redis.
link_binaries() {
    local b
    for b in redis-server redis-cli redis-benchmark redis-check-aof redis-check-rdb; do
        if [ ! -e "$SUITE/src/$b" ] && command -v "$b" >/dev/null; then
            ln -s "$(command -v "$b")" "$SUITE/src/$b"
        fi
    done
}

# Tests that read the replication stream (SYNC on a raw socket): the suite
# tags most of them needs:repl, a few not. The sidecar cannot carry a
# replication link, and such a test waits forever for the RDB payload, so
# both passes skip them by name (a regexp when the name has a variable).
write_skipfile() {
    (cd "$SUITE" && awk '
        match($0, /^[ \t]*test[ \t]+(\{[^}]*\}|"[^"]*")/) {
            t = substr($0, RSTART, RLENGTH)
            sub(/^[ \t]*test[ \t]+/, "", t)
            name = substr(t, 2, length(t) - 2)
        }
        /attach_to_replication_stream/ && name != "" && !(name in seen) {
            seen[name] = 1
            if (name ~ /\$/) {
                gsub(/[][().*+?^|\\{}]/, "\\\\&", name)
                gsub(/\$[A-Za-z_:]+/, ".*", name)
                print "/^" name "$"
            } else print name
        }' tests/unit/*.tcl tests/unit/type/*.tcl tests/integration/*.tcl) >"$1"
}

# ----------------------------------------------------------------- servers
# start_redis WORKDIR -> sets REDIS_PORT, REDIS_PID
start_redis() {
    local try
    for try in 1 2 3; do
        start_redis_once "$1" && return 0
        stop_pid "$REDIS_PID"
    done
    return 1
}
start_redis_once() {
    local wd="$1"
    mkdir -p "$wd"
    REDIS_PORT="$(free_port)"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$wd" \
        --daemonize no --save "" --appendonly no --logfile "$wd/redis.log" \
        --enable-protected-configs yes --enable-debug-command yes \
        --enable-module-command yes >"$wd/redis.stdout" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    wait_pong "$REDIS_PORT" "$REDIS_PID" "redis-server" || return 1
    # Make sure the PONG came from this server, not another one on that port.
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" info server | tr -d '\r' \
        | grep -qx "process_id:$REDIS_PID"
}

# start_sidecar WORKDIR UPSTREAM_PORT -> sets SIDE_PORT, SIDE_PID
start_sidecar() {
    local try
    for try in 1 2 3; do
        start_sidecar_once "$1" "$2" && return 0
        stop_pid "$SIDE_PID"
    done
    return 1
}
start_sidecar_once() {
    local wd="$1" up="$2"
    SIDE_PORT="$(free_port)"
    cat >"$wd/sidecar.toml" <<EOF
[server]
listen = "127.0.0.1:$SIDE_PORT"
max_clients = 10000
[upstream]
url = "redis://127.0.0.1:$up"
command_timeout = "0s"
[policy]
deny_commands = []
[admin]
listen = ""
EOF
    "$SIDECAR" --config "$wd/sidecar.toml" >"$wd/sidecar.log" 2>&1 &
    SIDE_PID=$!
    PIDS+=("$SIDE_PID")
    wait_pong "$SIDE_PORT" "$SIDE_PID" "resp-sidecar"
}

# ------------------------------------------------------------------- run
strip_colors() { sed -e 's/\x1b\[[0-9;]*m//g'; }

# run_unit MODE UNIT: one unit against fresh servers; appends to MODE.units
# ("unit<TAB>status<TAB>ok<TAB>err<TAB>skipped") and MODE.tests
# ("unit<TAB>ok|err|exception<TAB>test name").
run_unit() {
    local mode="$1" unit="$2" wd target rc status runner
    wd="$OUT/$mode/work/${unit//\//_}"
    rm -rf "$wd"; mkdir -p "$wd"
    if ! start_redis "$wd"; then
        printf '%s\tsetup-failed\t0\t0\t0\n' "$unit" >>"$OUT/$mode.units"
        log "$mode $unit: setup failed, see $wd"
        cleanup; return 0
    fi
    target="$REDIS_PORT"
    if [ "$mode" = sidecar ]; then
        if ! start_sidecar "$wd" "$REDIS_PORT"; then
            printf '%s\tsetup-failed\t0\t0\t0\n' "$unit" >>"$OUT/$mode.units"
            log "$mode $unit: setup failed, see $wd"
            cleanup; return 0
        fi
        target="$SIDE_PORT"
    fi
    local args=(--host 127.0.0.1 --port "$target" --clients 1 --timeout "$UNIT_TIMEOUT"
                --durable --tags "$TAGS" --single "$unit" --baseport "$SUITE_BASEPORT")
    [ "$SKIP_REPL_STREAM" = 1 ] && args+=(--skipfile "$OUT/skipfile")
    [ "$SINGLEDB" = 1 ] && args+=(--singledb)
    args+=("${EXTRA[@]}")
    local logf="$OUT/$mode/${unit//\//_}.log"
    ( cd "$SUITE" && exec timeout -k 10 "$UNIT_TIMEOUT" ./runtest "${args[@]}" ) \
        </dev/null >"$logf.raw" 2>&1 &
    runner=$!
    RUNNER="$runner"
    PIDS+=("$runner")
    rc=0; wait "$runner" || rc=$?
    forget_pid "$runner"; RUNNER=""
    strip_colors <"$logf.raw" >"$logf"; rm -f "$logf.raw"
    # A dead redis-server means the unit crashed it.
    if ! kill -0 "$REDIS_PID" 2>/dev/null; then
        echo "redis-server exited during the unit" >>"$logf"
    fi
    cleanup

    local ok err exc skip
    ok=$(grep -c '^\[ok\]: ' "$logf" || true)
    err=$(grep -c '^\[err\]: ' "$logf" || true)
    exc=$(grep -c '^\[exception\]: ' "$logf" || true)
    skip=$(grep -cE '^\[(skip|ignore)\]: ' "$logf" || true)
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then status=timeout
    elif [ "$exc" -gt 0 ]; then status=exception
    elif [ "$err" -gt 0 ]; then status=failed
    elif [ "$rc" != 0 ]; then status="exit-$rc"
    else status=passed
    fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$unit" "$status" "$ok" "$err" "$skip" >>"$OUT/$mode.units"
    sed -nE 's/^\[(ok)\]: (.*) \([0-9]+ ms\)$/\1\t\2/p; s/^\[(err)\]: (.*)$/\1\t\2/p; s/^\[(exception)\]: (.*)$/\1\t\2/p' "$logf" \
        | sed -E "s| in tests/[^ ]+\.tcl\$||; s|^|$unit\t|" >>"$OUT/$mode.tests"
    log "$mode $unit: $status (ok $ok, err $err)"
}

run_mode() {
    local mode="$1" u
    PIDS=()     # a pass only owns what it starts itself
    trap cleanup EXIT
    trap 'trap - INT TERM; log "$mode pass interrupted"; exit 130' INT TERM
    # Separate port ranges, also for the suite's own test server (it listens
    # just below --baseport), so parallel passes cannot cross.
    if [ "$mode" = direct ]; then PORT_BASE=24000 SUITE_BASEPORT=21111
    else PORT_BASE=27000 SUITE_BASEPORT=23111; fi
    RANDOM=$(( BASHPID ^ $(date +%N | sed 's/^0*//;s/^$/0/') ))
    mkdir -p "$OUT/$mode"
    : >"$OUT/$mode.units"; : >"$OUT/$mode.tests"
    for u in $UNIT_LIST; do
        run_unit "$mode" "$u"
    done
}

# ----------------------------------------------------------------- summary
summary() {
    local d="$OUT/direct" s="$OUT/sidecar"
    printf '\n%-40s %-22s %-22s\n' "unit" "direct (ok/err)" "sidecar (ok/err)"
    printf '%-40s %-22s %-22s\n' "----" "---------------" "----------------"
    awk -F'\t' '
        FNR == NR { dst[$1] = $2; dok[$1] = $3; derr[$1] = $4; order[++n] = $1; next }
        { sst[$1] = $2; sok[$1] = $3; serr[$1] = $4 }
        END {
            for (i = 1; i <= n; i++) {
                u = order[i]
                if (dok[u] + derr[u] + sok[u] + serr[u] == 0 && dst[u] == "passed" && sst[u] == "passed") continue
                printf "%-40s %-22s %-22s%s\n", u,
                    dok[u] "/" derr[u] " " dst[u], sok[u] "/" serr[u] " " sst[u],
                    (dst[u] != sst[u] || derr[u] != serr[u]) ? "  <--" : ""
                tdok += dok[u]; tderr += derr[u]; tsok += sok[u]; tserr += serr[u]
                if (dst[u] == "passed") dpass++
                if (sst[u] == "passed") spass++
                units++
            }
            printf "%-40s %-22s %-22s\n", "TOTAL tests (ok/err)", tdok+0 "/" tderr+0, tsok+0 "/" tserr+0
            printf "%-40s %-22s %-22s\n", "units with tests, clean", dpass+0 "/" units, spass+0 "/" units
        }' "$OUT/direct.units" "$OUT/sidecar.units"

    # Tests that failed through the sidecar but not directly.
    awk -F'\t' '$2 != "ok" { print $1 "\t" $3 }' "$OUT/direct.tests" | sort -u >"$OUT/direct.failed"
    awk -F'\t' '$2 != "ok" { print $1 "\t" $3 }' "$OUT/sidecar.tests" | sort -u >"$OUT/sidecar.failed"
    awk -F'\t' '$2 == "ok" { print $1 "\t" $3 }' "$OUT/direct.tests" | sort -u >"$OUT/direct.passed"
    awk -F'\t' '$2 == "ok" { print $1 "\t" $3 }' "$OUT/sidecar.tests" | sort -u >"$OUT/sidecar.passed"
    comm -23 "$OUT/sidecar.failed" "$OUT/direct.failed" >"$OUT/sidecar-only.failed"
    # Tests that passed directly but never reported through the sidecar
    # (the unit stopped early there).
    comm -23 "$OUT/direct.passed" <(sort -u "$OUT/sidecar.passed" "$OUT/sidecar.failed") \
        | cut -f1 | sort | uniq -c | awk '{ print $2 "\t" $1 " test(s) not reached" }' >"$OUT/sidecar-only.missing"

    echo
    echo "Failed only through the sidecar ($(wc -l <"$OUT/sidecar-only.failed")):"
    sed 's/^/  /' "$OUT/sidecar-only.failed"
    if [ -s "$OUT/sidecar-only.missing" ]; then
        echo "Passed directly, not reached through the sidecar:"
        sed 's/^/  /' "$OUT/sidecar-only.missing"
    fi
    local donly
    donly=$(comm -13 "$OUT/sidecar.failed" "$OUT/direct.failed" | wc -l)
    [ "$donly" -eq 0 ] || echo "Failed only directly (flaky?): $donly, see $OUT/direct.failed"
    echo "Logs: $OUT/{direct,sidecar}/<unit>.log"
    [ ! -s "$OUT/sidecar-only.failed" ] && [ ! -s "$OUT/sidecar-only.missing" ]
}

# -------------------------------------------------------------------- main
command -v redis-server >/dev/null || die "redis-server not installed"
command -v redis-cli >/dev/null || die "redis-cli not installed"
command -v tclsh >/dev/null || die "tclsh missing: apt-get install tcl"
fetch_suite
link_binaries
if [ "$ONLY" != direct ]; then
    if [ -z "$SIDECAR" ]; then
        SIDECAR="$ROOT/target/release/resp-sidecar"
        if [ ! -x "$SIDECAR" ]; then
            log "building the sidecar (release)"
            (cd "$ROOT" && cargo build --release --quiet)
        fi
    fi
    [ -x "$SIDECAR" ] || die "sidecar binary not found: $SIDECAR"
fi

if [ -z "$UNITS" ]; then
    UNITS="$(cd "$SUITE" && ./runtest --list-tests)"
fi
UNIT_LIST=""
for u in $UNITS; do
    skip=0
    for s in "${SKIPUNITS[@]:-}"; do [ "$u" = "$s" ] && skip=1; done
    [ "$skip" = 1 ] || UNIT_LIST="$UNIT_LIST $u"
done
[ -n "$OUT" ] || OUT="$DIR/results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
log "suite $SUITE, results in $OUT"
write_skipfile "$OUT/skipfile"

if [ -n "$ONLY" ]; then
    run_mode "$ONLY"
    exit 0
fi
if [ "$PARALLEL" = 1 ]; then
    ( run_mode direct ) & d=$!; PIDS+=("$d")
    ( run_mode sidecar ) & s=$!; PIDS+=("$s")
    wait "$d" || true; wait "$s" || true
    forget_pid "$d"; forget_pid "$s"
else
    run_mode direct
    run_mode sidecar
fi
if summary; then exit 0; else exit 1; fi
