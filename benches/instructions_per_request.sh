#!/usr/bin/env bash
# Instructions the sidecar executes in user space per request, for the default
# config and for the default plus EXTRA_TOML, counted by valgrind's cachegrind.
# Unlike throughput or CPU time on a shared machine, an instruction count does
# not move with other load, so it shows a small per-request cost (metrics,
# logging) that timing noise hides. It leaves out the kernel's work (the
# loopback TCP that is most of a request's CPU), so the share of the total is
# smaller than the share of these counts.
#
# For each test, config and depth it runs the sidecar under cachegrind, sends
# `redis-benchmark -t TEST -c CLIENTS -d 256 -n N -P DEPTH` (by default one client,
# so batches are the same from run to run), stops it, and subtracts a run that served one PING
# (start-up and shutdown). The clock library's start-up calibration, which runs
# for a varying number of iterations, is left out of every count. How reads
# split a pipeline still varies a little, so each figure is the median of
# REPEATS runs, the two configs alternating.
#
# Environment (all optional):
#   EXTRA_TOML   default: command metrics and logging off
#                (appended to a base that has a [policy] table: keys of that
#                table go in the base, as a table cannot be defined twice)
#   DEPTHS="1 16"
#   REQUESTS=20000
#   REPEATS=3
#   TESTS=get    redis-benchmark tests, one table each (e.g. "get set")
#   CLIENTS=1    redis-benchmark -c: 50 is the core benchmark's load, where a batch
#                of the shared connection carries several clients' commands (and
#                how reads fall moves a figure by a few dozen from run to run)
#   EXTRA_BENCH  redis-benchmark options for the runs with EXTRA_TOML only, e.g.
#                "--dbnum 3" for a mapped db (the default config stays in db 0:
#                there SELECT 3 would pin the client to a connection of its own)
#   PRELOAD_PREFIX  also store the GET key under this prefix (a mapped db's
#                namespace prefix), so both configs read the same 256-byte value
#   KEEP_WORK=1  keep the work dir (its .cg files are the last run of each config,
#                for cg_annotate) and print where it is
#   SIDECAR_BIN  default target/release/resp-sidecar (built unless SKIP_BUILD=1)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEPTHS="${DEPTHS:-1 16}"
TESTS="${TESTS:-get}"
EXTRA_BENCH="${EXTRA_BENCH:-}"
PRELOAD_PREFIX="${PRELOAD_PREFIX:-}"
REQUESTS="${REQUESTS:-20000}"
CLIENTS="${CLIENTS:-1}"
REPEATS="${REPEATS:-3}"
SIDECAR_BIN="${SIDECAR_BIN:-$ROOT/target/release/resp-sidecar}"
READY_TIMEOUT="${READY_TIMEOUT:-60}"
EXTRA_TOML="${EXTRA_TOML:-[admin]
command_metrics = false

[log]
level = \"off\"}"
BASE_TOML='[policy]
deny_commands = []
'

command -v valgrind >/dev/null || { echo "valgrind not found" >&2; exit 1; }
log() { printf '[ir] %s\n' "$*" >&2; }
# shellcheck source=../scripts/lib/topology.sh
source "$ROOT/scripts/lib/topology.sh"
extra_toml_check "$BASE_TOML" "$EXTRA_TOML"
bench_workdir ir
if [ "${KEEP_WORK:-0}" = 1 ]; then
    # Kill the processes as usual, keep the files.
    trap 'WORK_KEPT="$WORK"; WORK=/nonexistent; bench_cleanup; log "work dir kept: $WORK_KEPT"' EXIT
fi

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release)
fi
release_binary_check "$SIDECAR_BIN"

read -r REDIS_PORT PORT <<<"$(free_ports 2)"
mkdir -p "$WORK/redis"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$WORK/redis" --save "" \
    --appendonly no --logfile "$WORK/redis.log" &
PIDS+=("$!")
wait_ready redis-server "$!" "$REDIS_PORT" "$WORK/redis.log"
value="$(head -c 256 /dev/zero | tr '\0' x)"
redis-cli -p "$REDIS_PORT" set key:__rand_int__ "$value" >/dev/null
if [ -n "$PRELOAD_PREFIX" ]; then
    redis-cli -p "$REDIS_PORT" set "${PRELOAD_PREFIX}key:__rand_int__" "$value" >/dev/null
fi

# instructions NAME TOML TEST DEPTH N [BENCH_ARGS...]: user-space instructions of
# one sidecar run that served N requests of TEST at DEPTH (N = 0: one PING).
instructions() {
    local name="$1" toml="$2" test="$3" depth="$4" n="$5" pid
    shift 5
    printf '%s\n' "$toml" >"$WORK/$name.toml"
    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file="$WORK/$name.cg" \
        "$SIDECAR_BIN" --config "$WORK/$name.toml" --listen "127.0.0.1:$PORT" \
        --upstream "redis://127.0.0.1:$REDIS_PORT" --admin "" >"$WORK/$name.log" 2>&1 &
    pid="$!"
    wait_ready "$name" "$pid" "$PORT" "$WORK/$name.log"
    if [ "$n" -gt 0 ]; then
        redis-benchmark -h 127.0.0.1 -p "$PORT" -t "$test" -c "$CLIENTS" -d 256 -n "$n" -P "$depth" \
            -q "$@" >/dev/null
    fi
    kill -TERM "$pid"
    wait "$pid" || true
    # The metrics' clock library calibrates itself at start-up for a varying
    # number of rounds (14 to 24 million instructions, enough to move a
    # per-request figure by hundreds): its functions and clock_gettime, nearly
    # all of whose calls are the calibration's, are left out of the total (and
    # with them the few clock reads per batch the sidecar itself makes).
    cg_annotate --auto=no --threshold=0 "$WORK/$name.cg" 2>/dev/null | awk '
        /PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 }
        /file:function/ { listing = 1; next }
        listing && $1 ~ /^[0-9,]+$/ && /quanta|clock_gettime|Timespec|rdtsc|once_cell/ {
            gsub(",", "", $1); calibration += $1
        }
        END { printf "%d\n", total - calibration }'
}

echo "- extra config: $(printf '%s' "$EXTRA_TOML" | tr '\n' ' ')"
echo "- redis-benchmark -t TEST -c $CLIENTS -d 256 -n $REQUESTS -P DEPTH${EXTRA_BENCH:+ (with extra: $EXTRA_BENCH)}; user-space instructions (cachegrind) per request, start-up and shutdown subtracted; medians of $REPEATS runs"
base_idle="$(instructions base-idle "$BASE_TOML" get 1 0)"
extra_idle="$(instructions extra-idle "$BASE_TOML"$'\n'"$EXTRA_TOML" get 1 0)"
read -r -a extra_bench <<<"$EXTRA_BENCH"
for test in $TESTS; do
    echo
    echo "| $test -P | default | with extra | extra/default | default minus extra |"
    echo "|---|---|---|---|---|"
    for depth in $DEPTHS; do
        base=()
        extra=()
        for ((i = 1; i <= REPEATS; i++)); do
            log "$test -P $depth, run $i: default, then with extra"
            base+=("$(instructions base "$BASE_TOML" "$test" "$depth" "$REQUESTS")")
            extra+=("$(instructions extra "$BASE_TOML"$'\n'"$EXTRA_TOML" "$test" "$depth" "$REQUESTS" \
                "${extra_bench[@]}")")
        done
        python3 - "$depth" "$REQUESTS" "$base_idle" "$extra_idle" "${base[*]}" "${extra[*]}" <<'PY'
import statistics, sys
depth, n, base_idle, extra_idle = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
b = statistics.median((int(x) - base_idle) / n for x in sys.argv[5].split())
e = statistics.median((int(x) - extra_idle) / n for x in sys.argv[6].split())
print(f"| {depth} | {b:,.0f} | {e:,.0f} | {e / b:.3f}x | {b - e:,.0f} |")
PY
    done
done
