#!/usr/bin/env bash
# Migration figures, side by side in one run:
#
# 1. Backfill throughput: `resp-sidecar migrate` copying KEYS small keys (16-byte
#    strings) from one redis-server to another, against a plain loop of
#    `redis-cli --scan` + PTTL + DUMP + RESTORE per key (timed on a SAMPLE-key
#    subset: it is too slow for all of them; its rate does not depend on the total).
# 2. Write latency through the sidecar with [migration] phase = "off" (the old
#    store serves, nothing is copied) against phase = "shadow" (the old store
#    serves, every written key is copied to the new store): redis-benchmark
#    SET, INCR (10,000 random keys), LPUSH (redis-benchmark's one list, which
#    grows by every push: the worst case for copying whole keys) and LPUSH to
#    10,000 random lists, at -P 1, the two sidecars interleaved for ROUNDS
#    rounds; medians of rps, p50 and p99.
#
# Environment (all optional):
#   KEYS=100000         keys for the backfill
#   SAMPLE=1000         keys copied by the redis-cli loop
#   BACKFILL_ROUNDS=3   backfill runs (median reported)
#   ROUNDS=5            latency rounds
#   REQUESTS=50000      requests per redis-benchmark run
#   CLIENTS=10          redis-benchmark -c
#   SIDECAR_BIN         binary (default target/release/resp-sidecar)
#   SKIP_BUILD=1        do not run `cargo build --release`
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
KEYS="${KEYS:-100000}"
SAMPLE="${SAMPLE:-1000}"
BACKFILL_ROUNDS="${BACKFILL_ROUNDS:-3}"
ROUNDS="${ROUNDS:-5}"
REQUESTS="${REQUESTS:-50000}"
CLIENTS="${CLIENTS:-10}"
SIDECAR_BIN="${SIDECAR_BIN:-$ROOT/target/release/resp-sidecar}"

for tool in redis-server redis-cli redis-benchmark python3; do
    command -v "$tool" >/dev/null 2>&1 || { echo "migration.sh: $tool not found" >&2; exit 1; }
done
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release --quiet)
fi
# shellcheck source=../scripts/lib/topology.sh
source "$ROOT/scripts/lib/topology.sh"
release_binary_check "$SIDECAR_BIN"

WORK="$(mktemp -d)"
# Servers are started inside $(...) subshells: their pids are kept in a file.
PIDFILE="$WORK/pids"
touch "$PIDFILE"
cleanup() {
    while read -r p; do kill "$p" 2>/dev/null || true; done <"$PIDFILE"
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_port() {
    for _ in $(seq 1 200); do
        redis-cli -p "$1" PING >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "migration.sh: nothing answers on port $1" >&2
    exit 1
}

start_redis() {
    local port dir
    port="$(free_port)"
    dir="$WORK/redis-$port"
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
        >/dev/null 2>&1 &
    echo $! >>"$PIDFILE"
    wait_port "$port"
    echo "$port"
}

start_sidecar() { # upstream-port old-port phase
    local port conf
    port="$(free_port)"
    conf="$WORK/sidecar-$port.toml"
    cat >"$conf" <<TOML
[server]
listen = "127.0.0.1:$port"
[admin]
listen = ""
[upstream]
url = "redis://127.0.0.1:$1"
[policy]
deny_commands = []
[migration]
old_url = "redis://127.0.0.1:$2"
phase = "$3"
TOML
    RUST_LOG=warn "$SIDECAR_BIN" --config "$conf" >/dev/null 2>&1 &
    echo $! >>"$PIDFILE"
    wait_port "$port"
    echo "$port"
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

OLD="$(start_redis)"
NEW="$(start_redis)"
redis-cli -p "$OLD" EVAL "for i = 1, $KEYS do redis.call('SET', 'key:' .. i, 'value-0123456789') end" 0 >/dev/null
echo "# migration benchmark: $(nproc) CPUs, $(redis-server --version | awk '{print $3}'), load: $(cut -d' ' -f1-3 /proc/loadavg), commit $(cd "$ROOT" && git rev-parse --short HEAD)"

# 1. Backfill.
rates=()
for r in $(seq 1 "$BACKFILL_ROUNDS"); do
    redis-cli -p "$NEW" FLUSHALL >/dev/null
    out="$("$SIDECAR_BIN" migrate --from "redis://127.0.0.1:$OLD" --to "redis://127.0.0.1:$NEW" \
        --checkpoint "$WORK/cp" 2>/dev/null)"
    rate="$(awk '/^  rate / {print $2}' <<<"$out")"
    copied="$(awk '/^  copied / {print $2}' <<<"$out")"
    [ "$copied" = "$KEYS" ] || { echo "backfill copied $copied of $KEYS" >&2; exit 1; }
    rates+=("$rate")
done
sidecar_rate="$(printf '%s\n' "${rates[@]}" | median)"

redis-cli -p "$NEW" FLUSHALL >/dev/null
start="$(date +%s.%N)"
{ redis-cli -p "$OLD" --scan || true; } | head -n "$SAMPLE" | while read -r key; do
    ttl="$(redis-cli -p "$OLD" PTTL "$key")"
    [ "$ttl" -lt 0 ] && ttl=0
    redis-cli -p "$OLD" --raw DUMP "$key" | head -c -1 | redis-cli -p "$NEW" -x RESTORE "$key" "$ttl" >/dev/null
done
end="$(date +%s.%N)"
loop_rate="$(python3 -c "print(round($SAMPLE / ($end - $start)))")"
loop_copied="$(redis-cli -p "$NEW" DBSIZE)"

echo
echo "## Backfill of $KEYS small keys"
echo
echo "| method | keys/s | ratio |"
echo "|---|---|---|"
echo "| resp-sidecar migrate (median of $BACKFILL_ROUNDS) | $sidecar_rate | $(python3 -c "print(f'{$sidecar_rate / $loop_rate:.0f}x')") |"
echo "| redis-cli --scan + PTTL/DUMP/RESTORE loop ($loop_copied keys) | $loop_rate | 1x |"

# 2. Write latency, off vs shadow.
OFF="$(start_sidecar "$NEW" "$OLD" off)"
SHADOW="$(start_sidecar "$NEW" "$OLD" shadow)"
declare -A rps p50 p99
for r in $(seq 1 "$ROUNDS"); do
    for target in off shadow; do
        port="$OFF"; [ "$target" = shadow ] && port="$SHADOW"
        while IFS=, read -r test r_rps _avg _min r_p50 _p95 r_p99 _max; do
            test="${test//\"/}"
            [ "$test" = test ] && continue
            rps[$target,$test]+="${r_rps//\"/} "
            p50[$target,$test]+="${r_p50//\"/} "
            p99[$target,$test]+="${r_p99//\"/} "
        done < <(
            redis-benchmark -p "$port" -t set,incr,lpush -n "$REQUESTS" -c "$CLIENTS" -r 10000 -P 1 --csv 2>/dev/null
            redis-benchmark -p "$port" -n "$REQUESTS" -c "$CLIENTS" -r 10000 -P 1 --csv \
                LPUSH 'list:__rand_int__' value 2>/dev/null | sed 's/^"LPUSH list:__rand_int__ value"/"LPUSH_RANDOM"/'
        )
    done
done

echo
echo "## Write latency through the sidecar, phase off vs shadow (-P 1, -c $CLIENTS, medians of $ROUNDS)"
echo
echo "| test | off rps | shadow rps | off p50 ms | shadow p50 ms | off p99 ms | shadow p99 ms | shadow/off rps |"
echo "|---|---|---|---|---|---|---|---|"
for test in SET INCR LPUSH LPUSH_RANDOM; do
    m() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }
    o_rps="$(m "${rps[off,$test]}")"; s_rps="$(m "${rps[shadow,$test]}")"
    echo "| $test | $o_rps | $s_rps | $(m "${p50[off,$test]}") | $(m "${p50[shadow,$test]}") | $(m "${p99[off,$test]}") | $(m "${p99[shadow,$test]}") | $(python3 -c "print(f'{$s_rps / $o_rps:.2f}x')") |"
done
copied="$(redis-cli -p "$SHADOW" SIDECAR MIGRATION STATUS | grep -E '^(keys_copied|copy_failures):' | tr '\n' ' ')"
echo
echo "shadow sidecar after the run: $copied"
