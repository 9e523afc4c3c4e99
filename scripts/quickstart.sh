#!/usr/bin/env bash
# Bring up a local Redis and resp-sidecar in front of it, in the foreground.
#
# On a fresh Debian/Ubuntu machine with Rust: installs redis-server from the
# distribution's packages if it is missing, starts a throwaway redis-server on
# 127.0.0.1:6379 (or a free port if 6379 is taken) with its data in a temporary
# directory, builds the sidecar in release mode, starts it on 127.0.0.1:6380
# (or a free port if taken) and prints the redis-cli line to use. Ctrl-C stops
# both and removes the temporary directory.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
READY_TIMEOUT="${READY_TIMEOUT:-30}"

log() { printf '[quickstart] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

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

# wait_ready NAME PID PORT: poll PING until PONG, the process dies or the
# deadline passes.
wait_ready() {
    local name="$1" pid="$2" port="$3"
    local deadline=$((SECONDS + READY_TIMEOUT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        kill -0 "$pid" 2>/dev/null || die "$name exited during start-up"
        if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = "PONG" ]; then
            return 0
        fi
        sleep 0.1
    done
    die "$name did not answer PING on 127.0.0.1:$port within ${READY_TIMEOUT}s"
}

command -v cargo >/dev/null 2>&1 ||
    die "cargo not found: install Rust first (https://rustup.rs)"

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 ||
        die "redis-server is missing and apt-get is not available; install Redis 7 yourself"
    log "installing redis-server from the distribution's packages"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server redis-tools
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/resp-sidecar-quickstart.XXXXXX")"
REDIS_PID=""
SIDECAR_PID=""

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local pid
    for pid in "$SIDECAR_PID" "$REDIS_PID"; do
        if [ -n "$pid" ]; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$WORK"
    log "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

REDIS_PORT=6379
if listening "$REDIS_PORT"; then
    REDIS_PORT="$(free_port)"
    log "something already listens on 127.0.0.1:6379; starting our own Redis on $REDIS_PORT"
fi
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$WORK" \
    --save "" --appendonly no --daemonize no --logfile "$WORK/redis.log" &
REDIS_PID="$!"
wait_ready redis-server "$REDIS_PID" "$REDIS_PORT"
log "redis-server $(redis-server --version | cut -d' ' -f3 | cut -d= -f2) on 127.0.0.1:$REDIS_PORT (data and log in $WORK)"

log "building: cargo build --release"
(cd "$ROOT" && cargo build --release)

SIDECAR_PORT=6380
if listening "$SIDECAR_PORT"; then
    SIDECAR_PORT="$(free_port)"
    log "127.0.0.1:6380 is taken; the sidecar listens on $SIDECAR_PORT instead"
fi
ARGS=(--listen "127.0.0.1:$SIDECAR_PORT" --upstream "redis://127.0.0.1:$REDIS_PORT")
if [ -f "$ROOT/sidecar.toml" ]; then
    ARGS=(--config "$ROOT/sidecar.toml" "${ARGS[@]}")
fi
if listening 9121; then
    ARGS+=(--admin "")
    log "127.0.0.1:9121 is taken; the admin listener is disabled"
fi
"$ROOT/target/release/resp-sidecar" "${ARGS[@]}" &
SIDECAR_PID="$!"
wait_ready resp-sidecar "$SIDECAR_PID" "$SIDECAR_PORT"

cat <<EOF

resp-sidecar is listening on 127.0.0.1:$SIDECAR_PORT in front of Redis on 127.0.0.1:$REDIS_PORT.
Connect with:

    redis-cli -p $SIDECAR_PORT

Ctrl-C stops the sidecar and this Redis.

EOF

# Stay in the foreground until Ctrl-C or until the sidecar exits.
status=0
wait "$SIDECAR_PID" || status=$?
SIDECAR_PID=""
log "resp-sidecar exited with status $status"
exit "$status"
