#!/usr/bin/env bash
# A Sentinel failover under a steady write load through resp-sidecar.
#
# Starts on free loopback ports, each in its own temporary directory, a
# primary, one replica and three sentinels (quorum 2, down-after-milliseconds
# DOWN_AFTER_MS), waits until the replica is in sync and every sentinel sees
# the replica and both other sentinels, then starts the sidecar in sentinel
# mode. benches/failover_load.py then runs CLIENTS connections sending
# `INCR bench:counter` in a loop through the sidecar, subscribes to the
# sentinels' events, triggers the failover, keeps the load running until
# AFTER seconds past +switch-master, and prints as markdown:
#   - time from +switch-master (and from the trigger, and from the moment the
#     replica says ROLE master) to the first successful write on the new
#     primary after the last error; the error window;
#   - the error replies clients saw, by text;
#   - acknowledged writes lost: acked INCRs minus the counter on the new primary.
#
# Environment (all optional):
#   MODE=failover         failover: `SENTINEL FAILOVER mymaster`;
#                         kill: SIGKILL the primary (Redis replicates
#                         asynchronously, so some acknowledged writes may be lost)
#   CLIENTS=8             load connections
#   WARMUP=2              seconds of load before the trigger
#   AFTER=3               seconds of load after +switch-master
#   DOWN_AFTER_MS=1000    sentinel down-after-milliseconds
#   FAILOVER_TIMEOUT_MS=5000  sentinel failover-timeout
#   FAILOVER_WAIT=2s      the sidecar's upstream.failover_wait
#   SIDECAR_BIN           binary to run (default target/release/resp-sidecar)
#   SKIP_BUILD=1          do not run `cargo build --release`
#   KEEP_LOGS=1           keep the temporary directory with every log
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODE="${MODE:-failover}"
CLIENTS="${CLIENTS:-8}"
WARMUP="${WARMUP:-2}"
AFTER="${AFTER:-3}"
DOWN_AFTER_MS="${DOWN_AFTER_MS:-1000}"
FAILOVER_TIMEOUT_MS="${FAILOVER_TIMEOUT_MS:-5000}"
FAILOVER_WAIT="${FAILOVER_WAIT:-2s}"
SIDECAR_BIN="${SIDECAR_BIN:-$ROOT/target/release/resp-sidecar}"
SKIP_BUILD="${SKIP_BUILD:-0}"
KEEP_LOGS="${KEEP_LOGS:-0}"
READY_TIMEOUT="${READY_TIMEOUT:-10}"
CLUSTER_READY_TIMEOUT="${CLUSTER_READY_TIMEOUT:-30}"
MASTER_NAME=mymaster

case "$MODE" in
    failover | kill) ;;
    *) echo "failover.sh: MODE must be failover or kill, not '$MODE'" >&2; exit 2 ;;
esac

for tool in redis-server redis-sentinel redis-cli python3; do
    command -v "$tool" >/dev/null 2>&1 || { echo "failover.sh: $tool not found" >&2; exit 1; }
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/resp-sidecar-failover.XXXXXX")"
PIDS=()

# Sentinels first, so none of them starts a failover while the nodes stop.
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local pid i deadline
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill "${PIDS[$i]}" 2>/dev/null || true
    done
    deadline=$((SECONDS + 10))
    for pid in "${PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.05
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$KEEP_LOGS" = 1 ]; then
        log "logs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[failover] %s\n' "$*" >&2; }

# wait_until WHAT COMMAND...: poll COMMAND until it succeeds or
# CLUSTER_READY_TIMEOUT seconds pass.
wait_until() {
    local what="$1"
    shift
    local deadline=$((SECONDS + CLUSTER_READY_TIMEOUT))
    until "$@"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "timed out after ${CLUSTER_READY_TIMEOUT}s waiting for $what"
            exit 1
        fi
        sleep 0.1
    done
}

# Process helpers shared with scripts/quickstart.sh.
# shellcheck source=../scripts/lib/topology.sh
source "$ROOT/scripts/lib/topology.sh"

if [ "$SKIP_BUILD" != 1 ]; then
    log "building: cargo build --release"
    (cd "$ROOT" && cargo build --release)
fi
release_binary_check "$SIDECAR_BIN"

read -r PRIMARY_PORT REPLICA_PORT S1 S2 S3 SIDECAR_PORT <<<"$(free_ports 6)"
SENTINEL_PORTS=("$S1" "$S2" "$S3")

start_redis primary "$PRIMARY_PORT"
PRIMARY_PID="${PIDS[-1]}"
start_redis replica "$REPLICA_PORT" --replicaof 127.0.0.1 "$PRIMARY_PORT"
for i in 1 2 3; do
    start_sentinel "sentinel$i" "${SENTINEL_PORTS[$((i - 1))]}" "$PRIMARY_PORT"
done
log "waiting for the replica to sync and the sentinels to agree"
wait_until "the replica to be in sync" replica_in_sync
wait_until "the sentinels to agree" sentinels_agree

cat >"$WORK/sidecar.toml" <<EOF
[upstream]
mode = "sentinel"
sentinels = ["127.0.0.1:$S1", "127.0.0.1:$S2", "127.0.0.1:$S3"]
master_name = "$MASTER_NAME"
failover_wait = "$FAILOVER_WAIT"
EOF
RUST_LOG="${RUST_LOG:-info}" "$SIDECAR_BIN" --config "$WORK/sidecar.toml" \
    --listen "127.0.0.1:$SIDECAR_PORT" --admin "" 2>"$WORK/sidecar.log" &
PIDS+=("$!")
wait_ready resp-sidecar "$!" "$SIDECAR_PORT" "$WORK/sidecar.log"

echo "## resp-sidecar failover under load"
echo
echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || echo unknown CPU), kernel $(uname -r)"
echo "- $(redis-server --version | cut -d' ' -f1-3), loopback: primary :$PRIMARY_PORT, replica :$REPLICA_PORT, sentinels :$S1 :$S2 :$S3 (quorum 2, down-after-milliseconds $DOWN_AFTER_MS, failover-timeout $FAILOVER_TIMEOUT_MS)"
echo "- resp-sidecar at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (dirty tree)'), sentinel mode, failover_wait $FAILOVER_WAIT"
echo "- MODE=$MODE CLIENTS=$CLIENTS WARMUP=${WARMUP}s AFTER=${AFTER}s"
echo

LOAD_ARGS=(--sidecar "$SIDECAR_PORT" --sentinels "$S1,$S2,$S3" --replica "$REPLICA_PORT"
    --name "$MASTER_NAME" --mode "$MODE" --clients "$CLIENTS" --warmup "$WARMUP" --after "$AFTER")
if [ "$MODE" = kill ]; then
    LOAD_ARGS+=(--kill-pid "$PRIMARY_PID")
    # It is killed on purpose: no job notice from bash when it dies.
    disown "$PRIMARY_PID"
fi
status=0
python3 "$ROOT/benches/failover_load.py" "${LOAD_ARGS[@]}" || status=$?
if [ "$MODE" = kill ] && ! kill -0 "$PRIMARY_PID" 2>/dev/null; then
    # Gone: keep cleanup from signalling a pid that may be reused.
    ALIVE=()
    for pid in "${PIDS[@]}"; do
        [ "$pid" = "$PRIMARY_PID" ] || ALIVE+=("$pid")
    done
    PIDS=("${ALIVE[@]}")
fi

echo
echo "Sidecar log lines about the primary during the run:"
echo
echo '```'
grep -E 'sentinel::|upstream::shared' "$WORK/sidecar.log" | sed 's/\x1b\[[0-9;]*m//g' | tail -n 20 || true
echo '```'
exit "$status"
