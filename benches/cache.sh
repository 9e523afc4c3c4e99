#!/usr/bin/env bash
# The local cache, measured side by side on this machine (a benchmark, not a test):
#
# 1. cached GET through the sidecar vs GET on Redis directly (redis-benchmark,
#    50 clients, -P 1 and -P 16, 10k keys of 256 bytes that fit the cache),
#    interleaved for ROUNDS rounds (alternating which goes first); medians, the
#    ratio sidecar/direct, and the spread of the per-round ratios; then the CPU
#    per request of the server answering (Redis, or the sidecar's hit) and
#    redis-benchmark's own CPU over its wall time, which shows when the load
#    generator itself sets the figure (at -P 1 on 2 CPUs it does);
# 2. a session workload over 10k keys with two sidecars: 90% reads / 10% writes,
#    reads and writes through both sidecars at once; upstream GETs (Redis's
#    commandstats) as a share of client reads, for keys read through both
#    sidecars ("shared") and for keys each read through one ("sticky");
# 3. memory: a sidecar with cache.max_bytes = 32MiB, then one with 64MiB,
#    churning through 200k keys of 1 KiB (3-6x what fits); RSS after each run,
#    the peak, and the bound max_bytes + 30 MB;
# 4. what BCAST costs Redis: SET throughput directly on Redis with 0 and with 8
#    sidecars subscribed to the written prefix;
# 5. the staleness checker of tests/cache.rs for STALENESS_SECS (default 60).
#
# Environment (optional): ROUNDS=5, REQUESTS=200000 (per run at -P 1),
# REQUESTS_P16=1000000 (per run at -P 16: at ~1M rps a run of 200k is over in a
# fifth of a second, and one scheduling hiccup decides its figure), SKIP_BUILD=1,
# STALENESS_SECS=60 (0 skips step 5), CHURN_RUNS=6 (runs of 300k GETs in step 3),
# SIDECAR_BIN.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS="${ROUNDS:-5}"
REQUESTS="${REQUESTS:-200000}"
REQUESTS_P16="${REQUESTS_P16:-1000000}"
SKIP_BUILD="${SKIP_BUILD:-0}"
STALENESS_SECS="${STALENESS_SECS:-60}"
CHURN_RUNS="${CHURN_RUNS:-6}"
SIDECAR_BIN="${SIDECAR_BIN:-$ROOT/target/release/resp-sidecar}"
READY_TIMEOUT=10

log() { printf '[cache-bench] %s\n' "$*" >&2; }

# shellcheck source=../scripts/lib/topology.sh
source "$ROOT/scripts/lib/topology.sh"
bench_workdir cache

if [ "$SKIP_BUILD" != 1 ]; then
    log "building the release binary"
    cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
fi
release_binary_check "$SIDECAR_BIN"

# start_sidecar NAME PORT REDIS_PORT MAX_BYTES; sets SIDECAR_PID.
start_sidecar() {
    local name="$1" port="$2" redis_port="$3" max_bytes="$4"
    cat >"$WORK/$name.toml" <<EOF
[server]
max_clients = 20000

[cache]
max_bytes = "$max_bytes"

[policy]
deny_commands = []

[[namespace]]
name = "session"
prefix = "key:"
cache = true
degrade = "serve-stale"
EOF
    "$SIDECAR_BIN" --config "$WORK/$name.toml" --listen "127.0.0.1:$port" \
        --upstream "redis://127.0.0.1:$redis_port" --admin "" >"$WORK/$name.log" 2>&1 &
    SIDECAR_PID="$!"
    PIDS+=("$SIDECAR_PID")
    wait_ready "$name" "$SIDECAR_PID" "$port" "$WORK/$name.log"
    local deadline=$((SECONDS + READY_TIMEOUT))
    until redis-cli -p "$port" INFO sidecar | grep -q '^cache_state:live'; do
        [ "$SECONDS" -lt "$deadline" ] || { log "$name: cache never live"; exit 1; }
        sleep 0.05
    done
}

# rps PORT ARGS...: requests per second of one redis-benchmark run.
rps() {
    local port="$1"
    shift
    redis-benchmark -p "$port" -q "$@" | tr '\r' '\n' | awk '/requests per second/ {print $2}' | tail -n 1
}

# cpu_ticks PID: user + system CPU of a process so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# measured PORT PID N ARGS...: rps of one redis-benchmark run of N requests, then
# the server's CPU per request in microseconds and redis-benchmark's own CPU as a
# share of its wall time (near 1.0: the load generator itself is the limit).
measured() {
    local port="$1" pid="$2" n="$3" before after times r
    shift 3
    before="$(cpu_ticks "$pid")"
    times="$(mktemp)"
    r="$( { TIMEFORMAT='%R %U %S'; time rps "$port" -n "$n" "$@"; } 2>"$times")"
    after="$(cpu_ticks "$pid")"
    python3 - "$r" "$n" "$before" "$after" "$(getconf CLK_TCK)" "$(tail -n 1 "$times")" <<'PY'
import sys
r, n, before, after, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
real, user, sys_ = (float(x) for x in sys.argv[6].split())
print(r, f"{(after - before) / hz * 1e6 / n:.2f}", f"{(user + sys_) / real:.2f}")
PY
    rm -f "$times"
}

median() { python3 -c 'import statistics,sys; print(round(statistics.median(float(x) for x in sys.argv[1:])))' "$@"; }

get_calls() {
    redis-cli -p "$1" INFO commandstats | tr -d '\r' |
        awk -F'[=,:]' '$1 == "cmdstat_get" {print $3}' | grep . || echo 0
}

read -r REDIS_PORT A_PORT B_PORT C_PORT <<<"$(free_ports 4)"
start_redis redis "$REDIS_PORT"
REDIS_PID="${PIDS[-1]}"
log "loading 10k keys of 256 bytes"
redis-benchmark -p "$REDIS_PORT" -q -t set -r 10000 -n 100000 -d 256 -P 16 >/dev/null
start_sidecar sidecar-a "$A_PORT" "$REDIS_PORT" 64MiB
A_PID="$SIDECAR_PID"
start_sidecar sidecar-b "$B_PORT" "$REDIS_PORT" 64MiB
redis-benchmark -p "$A_PORT" -q -t get -r 10000 -n 100000 -P 16 >/dev/null

echo "## 1. Cached GET vs Redis directly (50 clients, 10k keys, 256 bytes, $ROUNDS rounds, medians)"
echo
echo "| -P | direct rps | sidecar (cached) rps | sidecar/direct | per-round ratios: min / median / max (rounds >= 1.0) |"
echo "|---|---|---|---|---|"
cpu_rows=()
for depth in 1 16; do
    direct=()
    sidecar=()
    direct_cpu=()
    sidecar_cpu=()
    bench_share=()
    n="$REQUESTS"
    [ "$depth" = 1 ] || n="$REQUESTS_P16"
    for round in $(seq "$ROUNDS"); do
        # Alternate which goes first, so a drift in the machine's speed favours neither.
        for target in direct sidecar; do
            [ $((round % 2)) = 1 ] || target="$([ "$target" = direct ] && echo sidecar || echo direct)"
            if [ "$target" = direct ]; then
                read -r r c b <<<"$(measured "$REDIS_PORT" "$REDIS_PID" "$n" -t get -c 50 -r 10000 -P "$depth")"
                direct+=("$r")
                direct_cpu+=("$c")
            else
                read -r r c b <<<"$(measured "$A_PORT" "$A_PID" "$n" -t get -c 50 -r 10000 -P "$depth")"
                sidecar+=("$r")
                sidecar_cpu+=("$c")
            fi
            bench_share+=("$b")
        done
    done
    d="$(median "${direct[@]}")"
    s="$(median "${sidecar[@]}")"
    spread="$(python3 - "${#direct[@]}" "${direct[@]}" "${sidecar[@]}" <<'PY'
import statistics, sys
n = int(sys.argv[1])
d, s = [float(x) for x in sys.argv[2:2 + n]], [float(x) for x in sys.argv[2 + n:]]
r = sorted(b / a for a, b in zip(d, s) if a)
print(f"{r[0]:.2f} / {statistics.median(r):.2f} / {r[-1]:.2f} ({sum(x >= 1.0 for x in r)} of {len(r)})")
PY
)"
    echo "| $depth | $d | $s | $(python3 -c "print(f'{$s/$d:.2f}x')") | $spread |"
    cpu_rows+=("| $depth | $(python3 -c 'import statistics,sys; print(f"{statistics.median(float(x) for x in sys.argv[1:]):.2f}")' "${direct_cpu[@]}") | $(python3 -c 'import statistics,sys; print(f"{statistics.median(float(x) for x in sys.argv[1:]):.2f}")' "${sidecar_cpu[@]}") | $(python3 -c 'import sys; v=sorted(float(x) for x in sys.argv[1:]); print(f"{v[0]:.2f} / {v[len(v)//2]:.2f} / {v[-1]:.2f}")' "${bench_share[@]}") |")
done
echo
echo "CPU per request of the server answering (Redis directly, or the sidecar's cache hit), medians, and redis-benchmark's own CPU over its wall time (min / median / max over every run; near 1.00 it is the load generator, not the server, that sets the rps):"
echo
echo "| -P | Redis CPU per GET, us | sidecar CPU per hit, us | redis-benchmark CPU / wall |"
echo "|---|---|---|---|"
printf '%s\n' "${cpu_rows[@]}"
echo

echo "## 2. Session workload, two sidecars, 90% reads / 10% writes over 10k keys"
echo
echo "| keys | client reads | upstream GETs | upstream/client |"
echo "|---|---|---|---|"
workload() {
    local label="$1" key_a="$2" key_b="$3" range="$4"
    local before after reads=$((4 * 90000))
    before="$(get_calls "$REDIS_PORT")"
    redis-benchmark -p "$A_PORT" -q -c 12 -r "$range" -n 90000 GET "$key_a" >/dev/null &
    local p1=$!
    redis-benchmark -p "$B_PORT" -q -c 12 -r "$range" -n 90000 GET "$key_b" >/dev/null &
    local p2=$!
    redis-benchmark -p "$A_PORT" -q -c 12 -r "$range" -n 90000 GET "$key_a" >/dev/null &
    local p3=$!
    redis-benchmark -p "$B_PORT" -q -c 12 -r "$range" -n 90000 GET "$key_b" >/dev/null &
    local p4=$!
    redis-benchmark -p "$A_PORT" -q -c 4 -r "$range" -n 20000 SET "$key_a" v >/dev/null &
    local p5=$!
    redis-benchmark -p "$B_PORT" -q -c 4 -r "$range" -n 20000 SET "$key_b" v >/dev/null
    wait "$p1" "$p2" "$p3" "$p4" "$p5"
    after="$(get_calls "$REDIS_PORT")"
    local up=$((after - before))
    echo "| $label | $reads | $up | $(python3 -c "print(f'{$up/$reads:.1%}')") |"
}
workload "shared: every key read through both sidecars" 'key:s:__rand_int__' 'key:s:__rand_int__' 10000
workload "sticky: each key read through one sidecar" 'key:a:__rand_int__' 'key:b:__rand_int__' 5000
echo

echo "## 3. Memory while the cache is full and churning (200k keys of 1 KiB, $CHURN_RUNS runs of 300k GETs)"
echo
log "loading 200k keys of 1 KiB"
redis-benchmark -p "$REDIS_PORT" -q -t set -r 200000 -n 600000 -d 1024 -P 16 >/dev/null
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
info_field() { redis-cli -p "$1" INFO sidecar | tr -d '\r' | awk -F: -v f="$2" '$1 == f {print $2}'; }
echo "| max_bytes | RSS at start | RSS after each run (MiB) | peak | bound (max_bytes + 30 MB) | within |"
echo "|---|---|---|---|---|---|"
for size in 32 64; do
    start_sidecar "sidecar-c$size" "$C_PORT" "$REDIS_PORT" "${size}MiB"
    base="$(rss_kib "$SIDECAR_PID")"
    runs=()
    peak=0
    for _ in $(seq "$CHURN_RUNS"); do
        redis-benchmark -p "$C_PORT" -q -t get -c 50 -r 200000 -n 300000 -P 16 >/dev/null
        now="$(rss_kib "$SIDECAR_PID")"
        runs+=("$(mib "$now")")
        [ "$now" -gt "$peak" ] && peak="$now"
    done
    # The bound in KiB: max_bytes in MiB plus 30,000,000 bytes.
    bound=$((size * 1024 + 30000000 / 1024))
    within=yes
    [ "$peak" -le "$bound" ] || within=NO
    echo "| ${size} MiB | $(mib "$base") MiB | ${runs[*]} | $(mib "$peak") MiB | $(mib "$bound") MiB | $within |"
    log "sidecar-c$size: cache_bytes $(info_field "$C_PORT" cache_bytes), evictions $(info_field "$C_PORT" cache_evictions)"
    kill "$SIDECAR_PID"
    wait "$SIDECAR_PID" 2>/dev/null || true
done
echo

echo "## 4. What BCAST subscribers cost Redis: SET -P 16 directly on Redis ($ROUNDS rounds, medians)"
echo
without=()
for _ in $(seq "$ROUNDS"); do
    without+=("$(rps "$REDIS_PORT" -t set -c 50 -r 10000 -n "$REQUESTS" -P 16 -d 256)")
done
read -r -a EXTRA <<<"$(free_ports 8)"
for i in "${!EXTRA[@]}"; do
    start_sidecar "idle-$i" "${EXTRA[$i]}" "$REDIS_PORT" 16MiB
done
with=()
for _ in $(seq "$ROUNDS"); do
    with+=("$(rps "$REDIS_PORT" -t set -c 50 -r 10000 -n "$REQUESTS" -P 16 -d 256)")
done
w0="$(median "${without[@]}")"
w8="$(median "${with[@]}")"
echo "SET rps with 2 sidecars subscribed (a, b): $w0; with 8 more: $w8 ($(python3 -c "print(f'{$w8/$w0:.2f}x')"))"
echo

if [ "$STALENESS_SECS" != 0 ]; then
    echo "## 5. Staleness checker for ${STALENESS_SECS}s"
    echo
    # A target directory of its own: a release build of the tests links the binary with
    # tokio's test-util feature (the unit tests pause the clock), whose clock reads take
    # a lock, and would replace target/release/resp-sidecar, which the benchmarks run.
    CACHE_STALENESS_SECS="$STALENESS_SECS" CARGO_TARGET_DIR="$ROOT/target/bench-tests" \
        cargo nextest run --release --manifest-path "$ROOT/Cargo.toml" \
        --test cache --no-capture staleness_checker 2>&1 | grep -E 'staleness:|PASS|FAIL' || true
fi
