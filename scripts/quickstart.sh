#!/usr/bin/env bash
# Bring up a local Sentinel-managed Redis and resp-sidecar in front of it, in
# the foreground.
#
#   scripts/quickstart.sh               primary + replica + 3 sentinels + sidecar
#   scripts/quickstart.sh --standalone  one Redis + sidecar
#
# On a fresh Debian/Ubuntu machine with Rust: installs redis-server,
# redis-sentinel and redis-tools from the distribution's packages if they are
# missing, and builds the sidecar in release mode. Then starts, on 127.0.0.1,
# each with its data and log in one temporary directory:
#   - a primary (port 6379), one replica (6381) and three sentinels
#     (26379-26381, quorum 2) monitoring it as "mymaster", and waits until the
#     replica is in sync and every sentinel sees the replica and both others;
#   - the sidecar in sentinel mode on 6380.
# A port that is taken is replaced by a free one. It prints the redis-cli line
# to use, every port, and how to force a failover and watch the sidecar
# follow, then shows the sidecar's log until Ctrl-C, which stops everything
# it started and removes the temporary directory.
#
# Environment (all optional):
#   DOWN_AFTER_MS=2000        sentinel down-after-milliseconds
#   FAILOVER_TIMEOUT_MS=5000  sentinel failover-timeout
#   READY_TIMEOUT=30          seconds each readiness wait may take
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
READY_TIMEOUT="${READY_TIMEOUT:-30}"
DOWN_AFTER_MS="${DOWN_AFTER_MS:-2000}"
FAILOVER_TIMEOUT_MS="${FAILOVER_TIMEOUT_MS:-5000}"
MASTER_NAME=mymaster

log() { printf '[quickstart] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

STANDALONE=0
for arg in "$@"; do
    case "$arg" in
        --standalone) STANDALONE=1 ;;
        -h | --help) usage; exit 0 ;;
        *) log "unknown argument: $arg (see --help)"; exit 2 ;;
    esac
done

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        sudo "$@"
    fi
}

# True when something accepts TCP connections on 127.0.0.1:$1.
listening() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A free loopback port: the kernel's choice when python3 is present,
# otherwise the first unused port of a high range.
free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
        return
    fi
    local port
    for ((port = 20000 + RANDOM % 20000; port < 65000; port++)); do
        if ! listening "$port"; then
            echo "$port"
            return
        fi
    done
    die "no free port found"
}

# pick_port VAR PREFERRED: sets VAR to PREFERRED when nothing listens there,
# else to a free port; never to a port picked before.
CHOSEN=" "
PRIMARY_PORT="" REPLICA_PORT="" SIDECAR_PORT="" S1="" S2="" S3=""
pick_port() {
    local var="$1" port="$2"
    if listening "$port" || [[ "$CHOSEN" == *" $port "* ]]; then
        log "127.0.0.1:$2 is taken; using a free port instead"
        port="$(free_port)"
        while [[ "$CHOSEN" == *" $port "* ]]; do
            port="$(free_port)"
        done
    fi
    CHOSEN+="$port "
    printf -v "$var" '%s' "$port"
}

# wait_until WHAT COMMAND...: poll COMMAND until it succeeds or the deadline passes.
wait_until() {
    local what="$1"
    shift
    local deadline=$((SECONDS + READY_TIMEOUT))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || die "timed out after ${READY_TIMEOUT}s waiting for $what"
        sleep 0.1
    done
}

command -v cargo >/dev/null 2>&1 ||
    die "cargo not found: install Rust first (https://rustup.rs)"

# Tools this mode needs, and the Debian/Ubuntu packages that provide them.
TOOLS=(redis-server redis-cli)
PACKAGES=(redis-server redis-tools)
if [ "$STANDALONE" = 0 ]; then
    TOOLS+=(redis-sentinel)
    PACKAGES+=(redis-sentinel)
fi
missing=0
for tool in "${TOOLS[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing=1
done
if [ "$missing" = 1 ]; then
    command -v apt-get >/dev/null 2>&1 ||
        die "one of ${TOOLS[*]} is missing and apt-get is not available; install Redis 7 yourself"
    log "installing ${PACKAGES[*]} from the distribution's packages"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${PACKAGES[@]}"
fi

log "building: cargo build --release"
(cd "$ROOT" && cargo build --release)

WORK="$(mktemp -d "${TMPDIR:-/tmp}/resp-sidecar-quickstart.XXXXXX")"
PIDS=()

# Stops everything in the reverse order of starting: the log tail and the
# sidecar first, then the sentinels (so none starts a failover while the nodes
# stop), then the nodes.
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local pid i deadline running
    # Only our jobs still running: a process killed by hand (kill -9 of the
    # primary) is gone and its pid may belong to someone else by now.
    running="$(jobs -rp) $(jobs -sp)"
    running=" ${running//$'\n'/ } "
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        [[ "$running" == *" ${PIDS[$i]} "* ]] || continue
        kill "${PIDS[$i]}" 2>/dev/null || true
    done
    deadline=$((SECONDS + 15))
    for pid in "${PIDS[@]}"; do
        [[ "$running" == *" $pid "* ]] || continue
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.05
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
    log "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Process helpers shared with benches/failover.sh.
# shellcheck source=lib/topology.sh
source "$ROOT/scripts/lib/topology.sh"

redis_version="$(redis-server --version | cut -d' ' -f3 | cut -d= -f2)"
pick_port PRIMARY_PORT 6379
pick_port SIDECAR_PORT 6380
ARGS=(--listen "127.0.0.1:$SIDECAR_PORT" --admin "")

if [ "$STANDALONE" = 1 ]; then
    start_redis redis "$PRIMARY_PORT"
    log "redis-server $redis_version on 127.0.0.1:$PRIMARY_PORT"
    if [ -f "$ROOT/sidecar.toml" ]; then
        ARGS=(--config "$ROOT/sidecar.toml" "${ARGS[@]}")
    fi
    ARGS+=(--upstream "redis://127.0.0.1:$PRIMARY_PORT")
else
    pick_port REPLICA_PORT 6381
    pick_port S1 26379
    pick_port S2 26380
    pick_port S3 26381
    SENTINEL_PORTS=("$S1" "$S2" "$S3")
    start_redis primary "$PRIMARY_PORT"
    PRIMARY_PID="${PIDS[-1]}"
    start_redis replica "$REPLICA_PORT" --replicaof 127.0.0.1 "$PRIMARY_PORT"
    REPLICA_PID="${PIDS[-1]}"
    for i in 1 2 3; do
        start_sentinel "sentinel$i" "${SENTINEL_PORTS[$((i - 1))]}" "$PRIMARY_PORT"
    done
    log "redis-server $redis_version: primary 127.0.0.1:$PRIMARY_PORT, replica 127.0.0.1:$REPLICA_PORT, sentinels $S1 $S2 $S3"
    log "waiting for the replica to sync and the sentinels to agree"
    wait_until "the replica to be in sync" replica_in_sync
    wait_until "the sentinels to agree" sentinels_agree
    cat >"$WORK/sidecar.toml" <<EOF
[upstream]
mode = "sentinel"
sentinels = ["127.0.0.1:$S1", "127.0.0.1:$S2", "127.0.0.1:$S3"]
master_name = "$MASTER_NAME"
# How long commands wait for the new primary during a failover before -TRYAGAIN.
failover_wait = "2s"
EOF
    ARGS=(--config "$WORK/sidecar.toml" "${ARGS[@]}")
fi

"$ROOT/target/release/resp-sidecar" "${ARGS[@]}" 2>"$WORK/sidecar.log" &
SIDECAR_PID="$!"
PIDS+=("$SIDECAR_PID")
wait_ready resp-sidecar "$SIDECAR_PID" "$SIDECAR_PORT" "$WORK/sidecar.log"

if [ "$STANDALONE" = 1 ]; then
    cat <<EOF

resp-sidecar is listening on 127.0.0.1:$SIDECAR_PORT in front of Redis on 127.0.0.1:$PRIMARY_PORT.
Connect with:

    redis-cli -p $SIDECAR_PORT

Data and logs are in $WORK. Ctrl-C stops the sidecar and this Redis.
The sidecar's log follows.

EOF
else
    cat <<EOF

resp-sidecar is listening on 127.0.0.1:$SIDECAR_PORT and forwards to the primary
that Sentinel names for "$MASTER_NAME". Connect with:

    redis-cli -p $SIDECAR_PORT

  primary    127.0.0.1:$PRIMARY_PORT  (pid $PRIMARY_PID)
  replica    127.0.0.1:$REPLICA_PORT  (pid $REPLICA_PID)
  sentinels  127.0.0.1:$S1  127.0.0.1:$S2  127.0.0.1:$S3  (quorum 2, down-after ${DOWN_AFTER_MS} ms)
  sidecar    127.0.0.1:$SIDECAR_PORT  (config $WORK/sidecar.toml)

Keep writing through the sidecar in a second terminal:

    redis-cli -p $SIDECAR_PORT -r -1 -i 0.2 INCR demo:counter

Force a failover:

    redis-cli -p $S1 SENTINEL FAILOVER $MASTER_NAME

and watch the sidecar follow (its log below says "failover started" and
"primary verified"; the counter keeps counting on the new primary):

    redis-cli -p $S1 SENTINEL get-master-addr-by-name $MASTER_NAME
    redis-cli -p $SIDECAR_PORT INFO server | grep tcp_port

The first names the new primary; the second asks the Redis that the sidecar
forwards to for its own port. (ROLE or INFO replication through the sidecar
always say master: they are answered by whichever primary is current.)
Or kill the primary: \`kill -9 $PRIMARY_PID\` (while $PRIMARY_PORT is still the primary); the
sentinels fail over after about ${DOWN_AFTER_MS} ms plus an election.

Data and logs are in $WORK. Ctrl-C stops everything.
The sidecar's log follows.

EOF
fi

# Stay in the foreground, showing the sidecar's log, until Ctrl-C or until
# the sidecar exits.
tail -n +1 -F --pid="$SIDECAR_PID" "$WORK/sidecar.log" &
PIDS+=("$!")
status=0
wait "$SIDECAR_PID" || status=$?
log "resp-sidecar exited with status $status"
exit "$status"
