#!/usr/bin/env bash
# The sidecar's CPU time per request, for two configurations side by side: a
# base sidecar and a second one with extra TOML, both in front of one
# redis-server and pinned to the same CPU. Throughput ratios on a small shared
# machine move by tens of percent from run to run; the CPU a sidecar spends
# per request (its time on CPU around one redis-benchmark run of one test) is
# a steadier measure of what a feature costs. CPU time is read from
# /proc/PID/task/*/schedstat (nanoseconds on CPU, summed over the process's
# threads) rather than /proc/PID/stat's clock ticks, whose 10 ms steps were a
# visible part of a short run's figure.
#
# Runs `redis-benchmark -t TESTS -c CLIENTS -d 256 -r 10000 -P DEPTH -n N`
# against each sidecar in turn (the order alternates), ROUNDS times per depth,
# and prints per test and depth the median microseconds of CPU per request, the
# median rps, and the ratio of the second sidecar to the first.
#
# Environment (all optional):
#   EXTRA_TOML='[admin]
#   command_metrics = false'   TOML appended to the second sidecar's config
#                              (the base has [server] and [policy] tables:
#                              a table cannot be defined twice, so their
#                              keys go in the base)
#   ROUNDS=5                   runs per sidecar and depth
#   DEPTHS="1 16"              pipeline depths
#   TESTS=get                  redis-benchmark tests, comma-separated (one run each)
#   REQUESTS_P1=200000         requests per run at -P 1
#   REQUESTS_P16=2000000       requests per run at deeper pipelines
#   CLIENTS=50                 redis-benchmark -c
#   PIN_CPU=1                  CPU both sidecars run on ("" = not pinned)
#   EXTRA_BENCH                redis-benchmark options for the second sidecar's
#                              runs only, e.g. "--dbnum 3" for a mapped db (the
#                              base stays in db 0, where SELECT 3 would pin each
#                              client to an upstream connection of its own)
#   SIDECAR_BIN                default target/release/resp-sidecar (built first
#                              unless SKIP_BUILD=1)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS="${ROUNDS:-5}"
DEPTHS="${DEPTHS:-1 16}"
TESTS="${TESTS:-get}"
EXTRA_BENCH="${EXTRA_BENCH:-}"
REQUESTS_P1="${REQUESTS_P1:-200000}"
REQUESTS_P16="${REQUESTS_P16:-2000000}"
CLIENTS="${CLIENTS:-50}"
PIN_CPU="${PIN_CPU-1}"
SIDECAR_BIN="${SIDECAR_BIN:-$ROOT/target/release/resp-sidecar}"
READY_TIMEOUT="${READY_TIMEOUT:-10}"
EXTRA_TOML="${EXTRA_TOML:-[admin]
command_metrics = false}"
BASE_TOML='[server]
max_clients = 20000

[policy]
deny_commands = []
'


log() { printf '[cpu] %s\n' "$*" >&2; }
# shellcheck source=../scripts/lib/topology.sh
source "$ROOT/scripts/lib/topology.sh"
extra_toml_check "$BASE_TOML" "$EXTRA_TOML"
bench_workdir cpu

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release)
fi
release_binary_check "$SIDECAR_BIN"

read -r REDIS_PORT BASE_PORT EXTRA_PORT <<<"$(free_ports 3)"
mkdir -p "$WORK/redis"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$WORK/redis" --save "" \
    --appendonly no --logfile "$WORK/redis.log" &
PIDS+=("$!")
wait_ready redis-server "$!" "$REDIS_PORT" "$WORK/redis.log"

# start NAME PORT TOML; sets STARTED_PID.
start() {
    local name="$1" port="$2" toml="$3" pin=()
    printf '%s\n' "$toml" >"$WORK/$name.toml"
    if [ -n "$PIN_CPU" ]; then pin=(taskset -c "$PIN_CPU"); fi
    "${pin[@]}" "$SIDECAR_BIN" --config "$WORK/$name.toml" --listen "127.0.0.1:$port" \
        --upstream "redis://127.0.0.1:$REDIS_PORT" --admin "" >"$WORK/$name.log" 2>&1 &
    STARTED_PID="$!"
    PIDS+=("$STARTED_PID")
    wait_ready "$name" "$STARTED_PID" "$port" "$WORK/$name.log"
}
start base "$BASE_PORT" "$BASE_TOML"
BASE_PID="$STARTED_PID"
start extra "$EXTRA_PORT" "$BASE_TOML"$'\n'"$EXTRA_TOML"
EXTRA_PID="$STARTED_PID"

# Nanoseconds on CPU, summed over the process's threads.
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f\n", s }'; }

echo "name,test,depth,round,us_per_request,rps" >"$WORK/results.csv"
run() {
    local name="$1" port="$2" pid="$3" depth="$4" round="$5" n test before after bench=()
    [ "$name" = extra ] && read -r -a bench <<<"$EXTRA_BENCH"
    n="$REQUESTS_P16"
    [ "$depth" = 1 ] && n="$REQUESTS_P1"
    # One redis-benchmark run per test, so each test's CPU time is its own.
    for test in ${TESTS//,/ }; do
        log "round $round: $name $test -P $depth -n $n"
        before="$(cpu_ns "$pid")"
        redis-benchmark -h 127.0.0.1 -p "$port" -t "$test" -c "$CLIENTS" -d 256 -r 10000 \
            -n "$n" -P "$depth" --csv "${bench[@]}" >"$WORK/out.csv"
        after="$(cpu_ns "$pid")"
        tr -d '"' <"$WORK/out.csv" | awk -F, -v name="$name" -v d="$depth" -v r="$round" \
            -v cpu="$((after - before))" -v n="$n" \
            'NR > 1 { printf "%s,%s,%s,%s,%.4f,%s\n", name, $1, d, r, cpu / 1e3 / n, $2 }' \
            >>"$WORK/results.csv"
    done
}

for ((round = 1; round <= ROUNDS; round++)); do
    for depth in $DEPTHS; do
        if ((round % 2)); then
            run base "$BASE_PORT" "$BASE_PID" "$depth" "$round"
            run extra "$EXTRA_PORT" "$EXTRA_PID" "$depth" "$round"
        else
            run extra "$EXTRA_PORT" "$EXTRA_PID" "$depth" "$round"
            run base "$BASE_PORT" "$BASE_PID" "$depth" "$round"
        fi
    done
done

echo "- extra config: $(printf '%s' "$EXTRA_TOML" | tr '\n' ' ')"
echo "- redis-benchmark -t $TESTS -c $CLIENTS -d 256 -r 10000${EXTRA_BENCH:+ (extra: $EXTRA_BENCH)}, -n $REQUESTS_P1 at -P 1, $REQUESTS_P16 deeper; $ROUNDS alternating rounds; medians${PIN_CPU:+; both sidecars on CPU $PIN_CPU}"
echo
python3 - "$WORK/results.csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print("| test | -P | base us/req | extra us/req | extra/base CPU | base rps | extra rps | extra/base rps |")
print("|---|---|---|---|---|---|---|---|")
for test, depth in sorted({(r["test"], int(r["depth"])) for r in rows}, key=lambda k: (k[1], k[0])):
    def med(name, col):
        return statistics.median(float(r[col]) for r in rows
                                 if r["name"] == name and r["test"] == test and int(r["depth"]) == depth)
    bc, ec = med("base", "us_per_request"), med("extra", "us_per_request")
    br, er = med("base", "rps"), med("extra", "rps")
    print(f"| {test} | {depth} | {bc:.3f} | {ec:.3f} | {ec / bc:.3f}x | {br:,.0f} | {er:,.0f} | {er / br:.3f}x |")
print()
print("per-run figures (name, test, depth, round, us/request, rps):")
for r in rows:
    print("  " + ", ".join(r[k] for k in ("name", "test", "depth", "round", "us_per_request", "rps")))
PY
