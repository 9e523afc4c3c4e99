#!/usr/bin/env bash
# Check that the common Redis client libraries work through resp-sidecar with
# their default settings: node-redis (`redis` on npm), ioredis, connect-redis
# with express-session, and redis-py (sync, protocol=3, protocol=2, asyncio).
#
# The libraries are installed into a temporary directory, never into the
# repository: npm install with scripts/client-compat/package.json (the newest
# release within each major it names) and the newest redis-py from pip in a
# venv. Each pass starts its own redis-server on a free loopback port; the
# sidecar pass puts resp-sidecar in front of it. The same checks run directly
# against Redis as a reference, so a check that fails only through the
# sidecar points at the sidecar, not at the library.
#
# While a pass runs, `redis-cli MONITOR` records what reaches Redis: in the
# direct pass that is what each library sends when it opens a connection
# (HELLO, CLIENT SETINFO, ...); in the sidecar pass it shows what the sidecar
# forwards (HELLO and CLIENT SETINFO are answered by the sidecar itself).
# Redis 7.0 refuses CLIENT SETINFO (new in 7.2) before MONITOR sees it, so
# there the direct pass lists only HELLO; the INFO client-info lines of the
# sidecar pass (lib-name, lib-ver) show what the libraries sent.
#
# Usage: scripts/client-compat.sh [options]
#   --only MODE      run only the "sidecar" or the "direct" pass
#   --libs L1,L2     only these libraries: node-redis, node-redis-resp2,
#                    ioredis, ioredis-resp2, connect-redis, redis-py,
#                    redis-py-resp3, redis-py-resp2, redis-py-asyncio
#   --deps DIR       install the libraries into DIR and reuse them on later
#                    runs (default: a fresh temporary directory)
#   --sidecar BIN    sidecar binary (default: cargo build --release, then
#                    target/release/resp-sidecar)
#   --keep           keep the work directory (logs, MONITOR captures)
# Exit status: 0 when every check passed in every pass run, 1 when a check
# failed, 2 on a setup error.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
HERE="$ROOT/scripts/client-compat"
ONLY=""
LIBS=""
DEPS=""
SIDECAR=""
KEEP=0
READY_TIMEOUT="${READY_TIMEOUT:-30}"
PASS_TIMEOUT="${PASS_TIMEOUT:-600}"
JS_LIBS="node-redis node-redis-resp2 ioredis ioredis-resp2 connect-redis"
PY_LIBS="redis-py redis-py-resp3 redis-py-resp2 redis-py-asyncio"

log() { printf '[client-compat] %s\n' "$*" >&2; }
die() { log "$*"; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --only) ONLY="$2"; shift 2 ;;
        --libs) LIBS="$2"; shift 2 ;;
        --deps) DEPS="$2"; shift 2 ;;
        --sidecar) SIDECAR="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option: $1 (see --help)" ;;
    esac
done
case "$ONLY" in ""|sidecar|direct) ;; *) die "--only takes sidecar or direct" ;; esac
for tool in node npm python3 redis-server redis-cli; do
    command -v "$tool" >/dev/null || die "$tool not found"
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/client-compat.XXXXXX")"

# ---------------------------------------------------------------- processes
PIDS=()
cleanup() {
    local pid i
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
    if [ "$KEEP" = 1 ]; then
        log "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'trap - INT TERM; exit 130' INT TERM

stop_pid() {
    local keep=() p
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    for p in "${PIDS[@]:-}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]:-}")
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A free loopback port below the kernel's ephemeral range.
free_port() {
    local p tries=0
    while [ $tries -lt 200 ]; do
        p=$(( 28000 + RANDOM % 3000 ))
        if ! listening "$p"; then echo "$p"; return 0; fi
        tries=$((tries + 1))
    done
    die "no free port found"
}

# wait_pong PORT PID WHAT: poll PING until PONG, the process dies, or timeout.
wait_pong() {
    local port="$1" pid="$2" what="$3" deadline=$((SECONDS + READY_TIMEOUT))
    while [ $SECONDS -lt $deadline ]; do
        kill -0 "$pid" 2>/dev/null || { log "$what exited during startup"; return 1; }
        [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = "PONG" ] && return 0
        sleep 0.1
    done
    log "$what not ready on port $port after ${READY_TIMEOUT}s"
    return 1
}

# wait_file_line FILE PATTERN PID WHAT: poll until FILE has a matching line.
wait_file_line() {
    local file="$1" pattern="$2" pid="$3" what="$4" deadline=$((SECONDS + READY_TIMEOUT))
    while [ $SECONDS -lt $deadline ]; do
        kill -0 "$pid" 2>/dev/null || { log "$what exited during startup"; return 1; }
        grep -q "$pattern" "$file" 2>/dev/null && return 0
        sleep 0.1
    done
    log "$what not ready after ${READY_TIMEOUT}s"
    return 1
}

# start_redis DIR -> REDIS_PORT, REDIS_PID (retries if the port was taken)
start_redis() {
    local dir="$1" try
    mkdir -p "$dir"
    for try in 1 2 3; do
        REDIS_PORT="$(free_port)"
        redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$dir" \
            --daemonize no --save "" --appendonly no \
            --logfile "$dir/redis.log" >"$dir/redis.stdout" 2>&1 &
        REDIS_PID=$!
        PIDS+=("$REDIS_PID")
        if wait_pong "$REDIS_PORT" "$REDIS_PID" redis-server \
            && redis-cli -h 127.0.0.1 -p "$REDIS_PORT" info server | tr -d '\r' \
                | grep -qx "process_id:$REDIS_PID"; then
            return 0
        fi
        stop_pid "$REDIS_PID"
    done
    return 1
}

# start_monitor PORT FILE -> MONITOR_PID, once MONITOR is active
start_monitor() {
    redis-cli -h 127.0.0.1 -p "$1" monitor >"$2" 2>&1 &
    MONITOR_PID=$!
    PIDS+=("$MONITOR_PID")
    wait_file_line "$2" '^OK' "$MONITOR_PID" "redis-cli MONITOR"
}

# start_sidecar DIR UPSTREAM_PORT -> SIDECAR_PORT, SIDECAR_PID
start_sidecar() {
    local dir="$1" up="$2" try
    # The built-in policy (its default deny list): none of these libraries
    # needs a denied command. Debug logging for the sidecar's own modules.
    # An explicit --config also keeps ./sidecar.toml out of the picture.
    cat >"$dir/sidecar.toml" <<'EOF'
[log]
level = "info,resp_sidecar=debug"
EOF
    for try in 1 2 3; do
        SIDECAR_PORT="$(free_port)"
        "$SIDECAR" --config "$dir/sidecar.toml" --listen "127.0.0.1:$SIDECAR_PORT" \
            --upstream "redis://127.0.0.1:$up" --admin "" >"$dir/sidecar.log" 2>&1 &
        SIDECAR_PID=$!
        PIDS+=("$SIDECAR_PID")
        wait_pong "$SIDECAR_PORT" "$SIDECAR_PID" resp-sidecar && return 0
        stop_pid "$SIDECAR_PID"
    done
    return 1
}

# ------------------------------------------------------------------- setup
if [ -z "$SIDECAR" ] && [ "$ONLY" != direct ]; then
    log "building the sidecar (cargo build --release)"
    (cd "$ROOT" && cargo build --release --quiet) || die "cargo build failed"
    SIDECAR="$ROOT/target/release/resp-sidecar"
fi
[ "$ONLY" = direct ] || [ -x "$SIDECAR" ] || die "no sidecar binary at $SIDECAR"

DEPS="${DEPS:-$WORK/deps}"
mkdir -p "$DEPS"
DEPS="$(cd "$DEPS" && pwd)"
if ! cmp -s "$HERE/package.json" "$DEPS/package.json" || [ ! -d "$DEPS/node_modules" ]; then
    log "installing the Node.js libraries into $DEPS"
    cp "$HERE/package.json" "$DEPS/package.json"
    (cd "$DEPS" && npm install --no-audit --no-fund --loglevel=error >"$DEPS/npm.log" 2>&1) \
        || { cat "$DEPS/npm.log" >&2; die "npm install failed"; }
fi
if [ ! -x "$DEPS/venv/bin/python" ]; then
    log "installing redis-py into $DEPS/venv"
    python3 -m venv "$DEPS/venv" || die "python3 -m venv failed"
    "$DEPS/venv/bin/pip" install --quiet --disable-pip-version-check --upgrade redis \
        || die "pip install redis failed"
fi
cp "$HERE/compat.js" "$HERE/compat.py" "$DEPS/"

ver_node() { node -e "console.log(require('$DEPS/node_modules/$1/package.json').version)"; }
log "node $(node --version), python $("$DEPS/venv/bin/python" --version 2>&1 | cut -d' ' -f2), $(redis-server --version | cut -d' ' -f1-3)"
log "redis (node-redis) $(ver_node redis), ioredis $(ver_node ioredis), connect-redis $(ver_node connect-redis), express-session $(ver_node express-session), redis-py $("$DEPS/venv/bin/python" -c 'import redis; print(redis.__version__)')"

js_only=""; py_only=""
if [ -n "$LIBS" ]; then
    for lib in ${LIBS//,/ }; do
        case " $JS_LIBS " in *" $lib "*) js_only="${js_only:+$js_only,}$lib"; continue ;; esac
        case " $PY_LIBS " in *" $lib "*) py_only="${py_only:+$py_only,}$lib"; continue ;; esac
        die "unknown library: $lib"
    done
else
    js_only="${JS_LIBS// /,}"; py_only="${PY_LIBS// /,}"
fi

# ------------------------------------------------------------------ passes
# Connection-setup commands seen by MONITOR, counted: what a library sends on
# connect, or what the sidecar forwards of it.
setup_commands() {
    sed -n 's/^[0-9.]* \[[0-9]* [^]]*\] //p' "$1" \
        | grep -E '^"(HELLO|hello|AUTH|auth|SELECT|select|READONLY|readonly)"|^"(CLIENT|client)" "(SETINFO|setinfo|SETNAME|setname|MAINT_NOTIFICATIONS|maint_notifications)"' \
        | sort | uniq -c | sort -rn | sed 's/^/    /' || true
}

# run_pass MODE: direct or sidecar; results in $WORK/MODE/results
run_pass() {
    local mode="$1" dir="$WORK/$1" port rc=0
    mkdir -p "$dir"
    start_redis "$dir" || die "redis-server did not start"
    start_monitor "$REDIS_PORT" "$dir/monitor.log" || die "MONITOR did not start"
    port="$REDIS_PORT"
    if [ "$mode" = sidecar ]; then
        start_sidecar "$dir" "$REDIS_PORT" || { cat "$dir/sidecar.log" >&2; die "the sidecar did not start"; }
        port="$SIDECAR_PORT"
    fi
    log "$mode pass: clients connect to 127.0.0.1:$port (redis-server on $REDIS_PORT)"
    : >"$dir/results"
    if [ -n "$js_only" ]; then
        (cd "$DEPS" && timeout "$PASS_TIMEOUT" node compat.js --port "$port" --only "$js_only") \
            2>"$dir/node.stderr" | tee -a "$dir/results" | sed "s/^/[$mode] /" || rc=1
    fi
    if [ -n "$py_only" ]; then
        (cd "$DEPS" && timeout "$PASS_TIMEOUT" venv/bin/python compat.py --port "$port" --only "$py_only") \
            2>"$dir/python.stderr" | tee -a "$dir/results" | sed "s/^/[$mode] /" || rc=1
    fi
    if [ "$mode" = sidecar ] && ! kill -0 "$SIDECAR_PID" 2>/dev/null; then
        echo "FAIL sidecar alive the sidecar process exited during the pass" >>"$dir/results"
        echo "[$mode] FAIL sidecar alive the sidecar process exited during the pass"
    fi
    stop_pid "$MONITOR_PID"
    echo
    echo "Connection-setup commands that reached redis-server in the $mode pass (count, command):"
    setup_commands "$dir/monitor.log"
    if [ "$mode" = sidecar ]; then
        stop_pid "$SIDECAR_PID"
        local warn
        warn="$(sed 's/\x1b\[[0-9;]*m//g' "$dir/sidecar.log" | grep -E ' (WARN|ERROR) ' | head -20 || true)"
        if [ -n "$warn" ]; then
            echo "Sidecar warnings and errors:"
            printf '%s\n' "$warn" | sed 's/^/    /'
        fi
    fi
    stop_pid "$REDIS_PID"
    [ -s "$dir/node.stderr" ] && { echo "node stderr:"; sed 's/^/    /' "$dir/node.stderr" | head -20; }
    [ -s "$dir/python.stderr" ] && { echo "python stderr:"; sed 's/^/    /' "$dir/python.stderr" | head -20; }
    echo
    return $rc
}

MODES=()
case "$ONLY" in
    "") MODES=(direct sidecar) ;;
    *) MODES=("$ONLY") ;;
esac
for mode in "${MODES[@]}"; do
    run_pass "$mode" || true
done

# ------------------------------------------------------------------ report
# One row per library and check: its result in each pass that ran.
echo "Results (a check failing only in the sidecar column points at the sidecar):"
awk -v modes="${MODES[*]}" -v work="$WORK" '
    BEGIN {
        n = split(modes, m, " ")
        for (i = 1; i <= n; i++) {
            f = work "/" m[i] "/results"
            while ((getline line < f) > 0) {
                split(line, w, " ")
                if (w[1] != "PASS" && w[1] != "FAIL") continue
                key = w[2] " " w[3]
                if (!(key in seen)) { seen[key] = 1; order[++rows] = key }
                res[key, i] = w[1]
            }
        }
        header = sprintf("  %-18s %-20s", "library", "check")
        for (i = 1; i <= n; i++) header = header sprintf(" %-8s", m[i])
        print header
        for (r = 1; r <= rows; r++) {
            split(order[r], kk, " ")
            row = sprintf("  %-18s %-20s", kk[1], kk[2])
            for (i = 1; i <= n; i++) {
                v = ((order[r], i) in res) ? res[order[r], i] : "-"
                row = row sprintf(" %-8s", v)
                if (v == "PASS") pass++
                else if (v == "FAIL") fail++
                if (v == "FAIL" && m[i] == "sidecar" && res[order[r], 1] == "PASS") only++
            }
            print row
        }
        printf "\nclient-compat: %d passed, %d failed\n", pass, fail
        if (only) printf "%d check(s) pass directly against Redis but fail through the sidecar\n", only
        exit fail ? 1 : 0
    }'
