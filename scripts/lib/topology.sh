# Shared by the scripts in benches/ and by scripts/quickstart.sh: free loopback
# ports, start Redis processes and wait until they are really ready, and check
# that a benchmarked binary is a plain release build. Sourced, not run. Uses
# the caller's log function, READY_TIMEOUT, WORK (temp dir), PIDS (array of
# started pids) and, for the Sentinel helpers, MASTER_NAME, DOWN_AFTER_MS,
# FAILOVER_TIMEOUT_MS, REPLICA_PORT, SENTINEL_PORTS.
# shellcheck shell=bash

# Print N distinct free loopback ports (all bound at once, so no duplicates).
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# wait_ready NAME PID PORT LOGFILE: poll PING until PONG, the process dies, or
# READY_TIMEOUT seconds pass.
wait_ready() {
    local name="$1" pid="$2" port="$3" logfile="$4"
    local deadline=$((SECONDS + READY_TIMEOUT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited during start-up; its log:"
            cat "$logfile" >&2 || true
            exit 1
        fi
        if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = "PONG" ]; then
            return 0
        fi
        sleep 0.05
    done
    log "$name not ready on 127.0.0.1:$port after ${READY_TIMEOUT}s; its log:"
    cat "$logfile" >&2 || true
    exit 1
}

# start_redis NAME PORT [ARGS...]: a redis-server with its data in $WORK/NAME.
start_redis() {
    local name="$1" port="$2"
    shift 2
    mkdir -p "$WORK/$name"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$WORK/$name" \
        --save "" --appendonly no --daemonize no \
        --logfile "$WORK/$name/redis.log" "$@" &
    PIDS+=("$!")
    wait_ready "$name" "$!" "$port" "$WORK/$name/redis.log"
}

# start_sentinel NAME PORT PRIMARY_PORT: a redis-sentinel with its config
# (which Sentinel rewrites) and log in $WORK/NAME.
start_sentinel() {
    local name="$1" port="$2" primary_port="$3"
    mkdir -p "$WORK/$name"
    cat >"$WORK/$name/sentinel.conf" <<EOF
port $port
bind 127.0.0.1
dir $WORK/$name
logfile $WORK/$name/sentinel.log
sentinel resolve-hostnames no
sentinel monitor $MASTER_NAME 127.0.0.1 $primary_port 2
sentinel down-after-milliseconds $MASTER_NAME $DOWN_AFTER_MS
sentinel failover-timeout $MASTER_NAME $FAILOVER_TIMEOUT_MS
EOF
    redis-sentinel "$WORK/$name/sentinel.conf" &
    PIDS+=("$!")
    wait_ready "$name" "$!" "$port" "$WORK/$name/sentinel.log"
}

# shellcheck disable=SC2317  # called through wait_until
replica_in_sync() {
    redis-cli -h 127.0.0.1 -p "$REPLICA_PORT" INFO replication 2>/dev/null |
        grep -q '^master_link_status:up'
}

# shellcheck disable=SC2317  # called through wait_until
# sentinel_field PORT FIELD: one field of `SENTINEL master mymaster`.
sentinel_field() {
    redis-cli -h 127.0.0.1 -p "$1" SENTINEL master "$MASTER_NAME" 2>/dev/null |
        awk -v f="$2" 'prev == f { print; exit } { prev = $0 }'
}

# Every sentinel sees the replica and both other sentinels.
# shellcheck disable=SC2317  # called through wait_until
sentinels_agree() {
    local port
    for port in "${SENTINEL_PORTS[@]}"; do
        [ "$(sentinel_field "$port" num-other-sentinels)" = 2 ] || return 1
        [ "$(sentinel_field "$port" num-slaves)" = 1 ] || return 1
    done
}

# bench_workdir NAME: a temp dir in WORK and an empty PIDS list; on exit every
# process in PIDS is killed and waited for and WORK removed (INT/TERM exit 130).
bench_workdir() {
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/resp-sidecar-$1.XXXXXX")"
    PIDS=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

# shellcheck disable=SC2317  # called through trap
bench_cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}

# release_binary_check BIN: refuse to benchmark a binary linked for the tests.
# A release build of the tests (`cargo nextest run --release`) relinks
# target/release/resp-sidecar with tokio's test-util feature, which the unit
# tests need for a paused clock; with it every clock read takes a lock (about
# 490 more instructions per request at -P 1). Its marker is tokio's
# DID_PAUSE_CLOCK symbol (a stripped binary has none and passes).
# ALLOW_TEST_BUILD=1 benchmarks it anyway.
release_binary_check() {
    [ "${ALLOW_TEST_BUILD:-0}" = 1 ] && return 0
    if grep -aq DID_PAUSE_CLOCK "$1" 2>/dev/null; then
        echo "$1 was linked for the tests (tokio test-util): run cargo build --release," >&2
        echo "or set ALLOW_TEST_BUILD=1 to benchmark it anyway" >&2
        exit 1
    fi
}

# extra_toml_check BASE EXTRA: the scripts that append EXTRA to a fixed BASE
# config fail at start-up (TOML forbids defining a table twice) when EXTRA
# repeats one of BASE's table headers; say so before anything starts, naming
# the table and the keys to carry over.
extra_toml_check() {
    local header
    while IFS= read -r header; do
        if printf '%s\n' "$2" | grep -qxF "$header"; then
            echo "EXTRA_TOML repeats $header, which the base config already has:" >&2
            printf '%s\n' "$1" >&2
            echo "it cannot be defined twice; change the script's base config instead" >&2
            exit 64
        fi
    done < <(printf '%s\n' "$1" | grep -E '^\[[^]]+\]$')
}
