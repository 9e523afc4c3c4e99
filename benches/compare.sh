#!/usr/bin/env bash
# Throughput and latency of resp-sidecar against Redis directly and against
# twemproxy (nutcracker), all in front of one redis-server on this machine.
#
# Runs `redis-benchmark -t get,set -c 50 -d 256 -r 10000` at -P 1 and -P 16
# against every target, interleaved, for ROUNDS rounds, and prints a markdown
# table of median rps, median p99 and the sidecar's ratios, then the spread of
# the ratios between runs of the same round, then the CPU per request of
# each target's process and of Redis behind it (from /proc) with
# redis-benchmark's own CPU over its wall time. Then measures the
# RSS cost of idle client connections (benches/idle_clients.py).
#
# Environment (all optional):
#   ROUNDS=5              rounds of the whole matrix
#   REQUESTS_P1=50000     requests per redis-benchmark run at -P 1
#   REQUESTS_P16=200000   requests per redis-benchmark run at -P 16
#   CLIENTS=50            redis-benchmark -c
#   DEPTHS="1 16"         pipeline depths
#   SIDECAR_EXTRA_TOML    TOML appended to the sidecar config of a second
#                         sidecar target, "sidecar+extra" (for "with X vs
#                         without" comparisons). The base config already has
#                         [server] and [policy] tables: use other tables, or
#                         put the whole config in SIDECAR_CONFIG_BASE.
#   SIDECAR_EXTRA_SERVER  lines added to the [server] table of that second
#                         target (e.g. SIDECAR_EXTRA_SERVER='threads = 2');
#                         either variable starts the second target
#   SIDECAR_EXTRA_BENCH   extra redis-benchmark arguments for that second
#                         target only (e.g. "--dbnum 3": its clients SELECT 3,
#                         which a namespace maps onto a key prefix)
#   BENCH_KEY             the key of every target's GET and SET (default
#                         key:__rand_int__, redis-benchmark's own); another
#                         pattern runs SET and GET as custom commands, with the
#                         same 256-byte value
#   SIDECAR_EXTRA_KEY     that key for the second sidecar target only (default
#                         BENCH_KEY): with BENCH_KEY=app3:key:__rand_int__,
#                         SIDECAR_EXTRA_KEY=key:__rand_int__ and
#                         SIDECAR_EXTRA_BENCH="--dbnum 3", Redis receives the
#                         same keys from both sidecars, and the difference is
#                         the mapping alone, not Redis's cost of longer keys
#   LAYOUT=shared         where the processes run, the same for every target:
#                         shared - wherever the scheduler puts them (default)
#                         server - redis-benchmark on CPU 0; Redis and the
#                                  proxy under test on CPU 1
#                         beside - redis-benchmark and the proxy on CPU 0,
#                                  Redis on CPU 1 (a sidecar beside its app)
#                         With three busy processes on two CPUs, "shared"
#                         moves -P 1 figures by tens of percent from run to
#                         run as the scheduler places them differently; a
#                         fixed layout gives every target the same placement
#   PIN_SIDECARS=CPU      run every sidecar on that CPU (taskset), so that two
#                         sidecar targets are compared on equal footing; the
#                         scheduler otherwise places them differently from run
#                         to run, which moves -P 1 figures by tens of percent
#                         (overrides LAYOUT's CPU for the sidecars)
#   SIDECAR_CONFIG_BASE   replaces the base sidecar config (default below)
#   SIDECAR_BIN           binary to run (default target/release/resp-sidecar)
#   SKIP_BUILD=1          do not run `cargo build --release`
#   SKIP_SIDECAR=1        benchmark only direct and twemproxy
#   IDLE_CLIENTS=10000    idle connections for the memory figure (0 skips it)
#   RESULTS_CSV=FILE      also keep the raw per-run figures in FILE
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS="${ROUNDS:-5}"
REQUESTS_P1="${REQUESTS_P1:-50000}"
REQUESTS_P16="${REQUESTS_P16:-200000}"
CLIENTS="${CLIENTS:-50}"
DEPTHS="${DEPTHS:-1 16}"
SIDECAR_BIN="${SIDECAR_BIN:-$ROOT/target/release/resp-sidecar}"
SKIP_BUILD="${SKIP_BUILD:-0}"
SKIP_SIDECAR="${SKIP_SIDECAR:-0}"
IDLE_CLIENTS="${IDLE_CLIENTS:-10000}"
READY_TIMEOUT="${READY_TIMEOUT:-10}"
LAYOUT="${LAYOUT:-shared}"
BENCH_KEY="${BENCH_KEY:-key:__rand_int__}"
SIDECAR_EXTRA_KEY="${SIDECAR_EXTRA_KEY:-$BENCH_KEY}"
VALUE="$(printf 'x%.0s' $(seq 256))"
# CPU lists for taskset, empty where the scheduler decides.
case "$LAYOUT" in
    shared) BENCH_CPU="" REDIS_CPU="" PROXY_CPU="" ;;
    server) BENCH_CPU=0 REDIS_CPU=1 PROXY_CPU=1 ;;
    beside) BENCH_CPU=0 REDIS_CPU=1 PROXY_CPU=0 ;;
    *) echo "compare.sh: LAYOUT must be shared, server or beside, not '$LAYOUT'" >&2; exit 64 ;;
esac
if [ "$LAYOUT" != shared ] && [ "$(nproc)" -lt 2 ]; then
    echo "compare.sh: LAYOUT=$LAYOUT needs two CPUs" >&2
    exit 64
fi
# on_cpu CPU: sets ON_CPU to the command prefix that runs a program on that CPU
# (taskset execs it, so $! stays the program's pid), empty when CPU is empty.
on_cpu() {
    ON_CPU=()
    if [ -n "$1" ]; then
        ON_CPU=(taskset -c "$1")
    fi
}

DEFAULT_SIDECAR_CONFIG='[server]
max_clients = 20000

[policy]
deny_commands = []
'
SIDECAR_CONFIG_BASE="${SIDECAR_CONFIG_BASE:-$DEFAULT_SIDECAR_CONFIG}"

for tool in redis-server redis-cli redis-benchmark nutcracker python3 taskset; do
    command -v "$tool" >/dev/null 2>&1 || { echo "compare.sh: $tool not found" >&2; exit 1; }
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/resp-sidecar-bench.XXXXXX")"
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[compare] %s\n' "$*" >&2; }

# free_ports and wait_ready, shared with the other scripts (its start_redis is
# replaced by the one-Redis version below).
# shellcheck source=../scripts/lib/topology.sh
source "$ROOT/scripts/lib/topology.sh"

# Targets: parallel arrays of name and port. Adding a target is one line.
TARGET_NAMES=()
TARGET_PORTS=()
# add_target NAME PORT PID: PID is the process that serves the port (its CPU is read).
add_target() { TARGET_NAMES+=("$1"); TARGET_PORTS+=("$2"); TARGET_PIDS+=("$3"); }

start_redis() {
    local port="$1"
    mkdir -p "$WORK/redis"
    on_cpu "$REDIS_CPU"
    "${ON_CPU[@]}" redis-server --bind 127.0.0.1 --port "$port" --dir "$WORK/redis" \
        --save "" --appendonly no --daemonize no \
        --logfile "$WORK/redis.log" &
    PIDS+=("$!")
    wait_ready redis-server "$!" "$port" "$WORK/redis.log"
}

start_twemproxy() {
    local port="$1" stats_port="$2" redis_port="$3"
    cat >"$WORK/nutcracker.yml" <<EOF
bench:
  listen: 127.0.0.1:$port
  hash: fnv1a_64
  distribution: ketama
  redis: true
  preconnect: true
  auto_eject_hosts: false
  server_connections: 1
  servers:
   - 127.0.0.1:$redis_port:1
EOF
    if ! nutcracker -t -c "$WORK/nutcracker.yml" >"$WORK/nutcracker-check.log" 2>&1; then
        cat "$WORK/nutcracker-check.log" >&2
        exit 1
    fi
    on_cpu "$PROXY_CPU"
    "${ON_CPU[@]}" nutcracker -c "$WORK/nutcracker.yml" -s "$stats_port" -a 127.0.0.1 \
        -o "$WORK/nutcracker.log" -p "$WORK/nutcracker.pid" &
    PIDS+=("$!")
    wait_ready nutcracker "$!" "$port" "$WORK/nutcracker.log"
}

# start_sidecar NAME PORT REDIS_PORT CONFIG_TEXT; sets SIDECAR_PID.
start_sidecar() {
    local name="$1" port="$2" redis_port="$3" config="$4"
    printf '%s\n' "$config" >"$WORK/$name.toml"
    local pin=()
    if [ -n "${PIN_SIDECARS:-}" ]; then
        pin=(taskset -c "$PIN_SIDECARS")
    elif [ -n "$PROXY_CPU" ]; then
        pin=(taskset -c "$PROXY_CPU")
    fi
    "${pin[@]}" "$SIDECAR_BIN" --config "$WORK/$name.toml" --listen "127.0.0.1:$port" \
        --upstream "redis://127.0.0.1:$redis_port" --admin "" \
        >"$WORK/$name.log" 2>&1 &
    SIDECAR_PID="$!"
    PIDS+=("$SIDECAR_PID")
    wait_ready "$name" "$SIDECAR_PID" "$port" "$WORK/$name.log"
}

# 10,000 idle clients need that many descriptors in the sidecar, which
# inherits this limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ "$SKIP_SIDECAR" != 1 ] && [ "$SKIP_BUILD" != 1 ]; then
    log "building: cargo build --release"
    (cd "$ROOT" && cargo build --release)
fi
[ "$SKIP_SIDECAR" = 1 ] || release_binary_check "$SIDECAR_BIN"

read -r REDIS_PORT TWEM_PORT TWEM_STATS_PORT SIDECAR_PORT SIDECAR_X_PORT <<<"$(free_ports 5)"

start_redis "$REDIS_PORT"
REDIS_PID="${PIDS[-1]}"
add_target direct "$REDIS_PORT" "$REDIS_PID"

start_twemproxy "$TWEM_PORT" "$TWEM_STATS_PORT" "$REDIS_PORT"
add_target twemproxy "$TWEM_PORT" "${PIDS[-1]}"

SIDECAR_PID=""
if [ "$SKIP_SIDECAR" != 1 ]; then
    start_sidecar sidecar "$SIDECAR_PORT" "$REDIS_PORT" "$SIDECAR_CONFIG_BASE"
    add_target sidecar "$SIDECAR_PORT" "$SIDECAR_PID"
    MAIN_SIDECAR_PID="$SIDECAR_PID"
    if [ -n "${SIDECAR_EXTRA_TOML:-}" ] || [ -n "${SIDECAR_EXTRA_SERVER:-}" ]; then
        extra_base="$SIDECAR_CONFIG_BASE"
        if [ -n "${SIDECAR_EXTRA_SERVER:-}" ]; then
            extra_base="${extra_base/\[server\]/[server]$'\n'$SIDECAR_EXTRA_SERVER}"
        fi
        start_sidecar sidecar+extra "$SIDECAR_X_PORT" "$REDIS_PORT" \
            "$extra_base"$'\n'"${SIDECAR_EXTRA_TOML:-}"
        add_target sidecar+extra "$SIDECAR_X_PORT" "$SIDECAR_PID"
    fi
    SIDECAR_PID="$MAIN_SIDECAR_PID"
fi

echo "## resp-sidecar benchmark"
echo
echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || echo unknown CPU), kernel $(uname -r)"
echo "- $(redis-server --version | cut -d' ' -f1-3), $(nutcracker --version 2>&1 | head -n 1 | sed 's/^This is //')"
if [ "$SKIP_SIDECAR" != 1 ]; then
    echo "- resp-sidecar at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (dirty tree)')"
fi
runs="redis-benchmark -t get,set -d 256 -c $CLIENTS -r 10000, -n $REQUESTS_P1 at -P 1 and $REQUESTS_P16 at deeper pipelines, $ROUNDS interleaved rounds, medians"
if [ "$BENCH_KEY" = "key:__rand_int__" ] && [ "$SIDECAR_EXTRA_KEY" = "$BENCH_KEY" ]; then
    echo "- $runs"
else
    echo "- ${runs/-t get,set -d 256/SET <key> <256 bytes> then GET <key>}"
    if [ "$SIDECAR_EXTRA_KEY" = "$BENCH_KEY" ]; then
        echo "- keys: $BENCH_KEY"
    else
        echo "- keys: $BENCH_KEY, and $SIDECAR_EXTRA_KEY for sidecar+extra"
    fi
fi
echo "- targets: ${TARGET_NAMES[*]}${PIN_SIDECARS:+ (sidecars pinned to CPU $PIN_SIDECARS)}"
case "$LAYOUT" in
    shared) echo "- layout: shared (the scheduler places every process)" ;;
    server) echo "- layout: server (redis-benchmark on CPU 0; Redis and the proxy under test on CPU 1)" ;;
    beside) echo "- layout: beside (redis-benchmark and the proxy under test on CPU 0; Redis on CPU 1)" ;;
esac
echo

RESULTS="$WORK/results.csv"
echo "target,depth,round,test,rps,p99_ms" >"$RESULTS"
# Per run: CPU seconds of the target's process and of Redis, and redis-benchmark's
# own CPU and wall seconds.
CPU="$WORK/cpu.csv"
echo "target,depth,round,requests,target_cpu,redis_cpu,bench_cpu,bench_wall" >"$CPU"
HZ="$(getconf CLK_TCK)"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run_one() {
    local name="$1" port="$2" depth="$3" round="$4" pid="$5" requests
    case "$depth" in
        1) requests="$REQUESTS_P1" ;;
        *) requests="$REQUESTS_P16" ;;
    esac
    local extra=()
    if [ "$name" = sidecar+extra ] && [ -n "${SIDECAR_EXTRA_BENCH:-}" ]; then
        read -r -a extra <<<"$SIDECAR_EXTRA_BENCH"
    fi
    local key="$BENCH_KEY"
    if [ "$name" = sidecar+extra ]; then
        key="$SIDECAR_EXTRA_KEY"
    fi
    log "round $round: $name -P $depth -n $requests ${extra[*]} key $key"
    local t0 r0 ok=1
    on_cpu "$BENCH_CPU"
    local bench=("${ON_CPU[@]}" redis-benchmark -h 127.0.0.1 -p "$port" -c "$CLIENTS"
        -r 10000 -n "$requests" -P "$depth" "${extra[@]}" --csv)
    t0="$(cpu_ticks "$pid")"
    r0="$(cpu_ticks "$REDIS_PID")"
    {
        TIMEFORMAT='%U %S %R'
        if [ "$key" = "key:__rand_int__" ]; then
            time "${bench[@]}" -t get,set -d 256 >"$WORK/benchmark.out" 2>&1 || ok=0
        else
            # Custom commands, in -t's order; CSV names them by the whole command.
            time {
                "${bench[@]}" SET "$key" "$VALUE" >"$WORK/benchmark.out" 2>&1 &&
                    "${bench[@]}" GET "$key" >>"$WORK/benchmark.out" 2>&1
            } || ok=0
        fi
    } 2>"$WORK/time.out"
    if [ "$ok" != 1 ]; then
        log "redis-benchmark failed against $name:"
        cat "$WORK/benchmark.out" >&2
        exit 1
    fi
    read -r bu bs bw <"$WORK/time.out"
    echo "$name,$depth,$round,$((2 * requests)),$(awk -v a="$t0" -v b="$(cpu_ticks "$pid")" -v h="$HZ" 'BEGIN {print (b - a) / h}'),$(awk -v a="$r0" -v b="$(cpu_ticks "$REDIS_PID")" -v h="$HZ" 'BEGIN {print (b - a) / h}'),$(awk -v u="$bu" -v s="$bs" 'BEGIN {print u + s}'),$bw" >>"$CPU"
    # CSV columns (quoted): test,rps,avg,min,p50,p95,p99,max latency in ms.
    tr -d '"' <"$WORK/benchmark.out" |
        awk -F, -v t="$name" -v d="$depth" -v r="$round" \
            '{ sub(/ .*/, "", $1) }
             $1 == "GET" || $1 == "SET" { print t "," d "," r "," $1 "," $2 "," $7; n++ }
             END { exit n == 2 ? 0 : 1 }' >>"$RESULTS" || {
        log "unexpected redis-benchmark output from $name:"
        cat "$WORK/benchmark.out" >&2
        exit 1
    }
}

count="${#TARGET_NAMES[@]}"
for ((round = 1; round <= ROUNDS; round++)); do
    for depth in $DEPTHS; do
        # Rotate the starting target each round so none always runs first.
        for ((i = 0; i < count; i++)); do
            j=$(((i + round - 1) % count))
            run_one "${TARGET_NAMES[$j]}" "${TARGET_PORTS[$j]}" "$depth" "$round" "${TARGET_PIDS[$j]}"
        done
    done
done

if [ -n "${RESULTS_CSV:-}" ]; then
    cp "$RESULTS" "$RESULTS_CSV"
fi

python3 - "$RESULTS" "${TARGET_NAMES[@]}" <<'PY'
import csv, statistics, sys

path, targets = sys.argv[1], sys.argv[2:]
runs = {}
for row in csv.DictReader(open(path)):
    key = (row["test"], int(row["depth"]), row["target"])
    runs.setdefault(key, []).append((float(row["rps"]), float(row["p99_ms"])))

def median(key, i):
    values = [r[i] for r in runs.get(key, [])]
    return statistics.median(values) if values else None

sidecars = [t for t in targets if t.startswith("sidecar")]
baselines = [t for t in ("twemproxy", "direct") if t in targets]
header = ["test", "-P"]
header += [f"{t} rps" for t in targets]
header += [f"{t} p99 ms" for t in targets]
header += [f"{s}/{b}" for s in sidecars for b in baselines]
if "sidecar+extra" in targets and "sidecar" in targets:
    header.append("sidecar+extra/sidecar")
print("| " + " | ".join(header) + " |")
print("|" + "|".join("---" for _ in header) + "|")

def ratio(a, b):
    return f"{a / b:.2f}x" if a is not None and b else "n/a"

for test, depth in sorted({(k[0], k[1]) for k in runs}, key=lambda k: (k[1], k[0])):
    rps = {t: median((test, depth, t), 0) for t in targets}
    p99 = {t: median((test, depth, t), 1) for t in targets}
    cells = [test, str(depth)]
    cells += [f"{rps[t]:,.0f}" if rps[t] is not None else "n/a" for t in targets]
    cells += [f"{p99[t]:.3f}" if p99[t] is not None else "n/a" for t in targets]
    cells += [ratio(rps[s], rps[b]) for s in sidecars for b in baselines]
    if "sidecar+extra" in targets and "sidecar" in targets:
        cells.append(ratio(rps["sidecar+extra"], rps["sidecar"]))
    print("| " + " | ".join(cells) + " |")

# A ratio of medians hides how often each side was ahead. Runs of one round are
# adjacent in time, so a round's ratio compares like with like on a machine whose
# speed drifts: show their spread and how many rounds the sidecar was ahead in.
pairs = [(s, b) for s in sidecars for b in baselines]
if "sidecar+extra" in targets and "sidecar" in targets:
    pairs.append(("sidecar+extra", "sidecar"))
by_round = {}
for row in csv.DictReader(open(path)):
    key = (row["test"], int(row["depth"]), row["target"])
    by_round.setdefault(key, {})[row["round"]] = float(row["rps"])
print()
print("Per-round throughput ratios (min / median / max, and rounds at or above 1.0):")
print()
head = ["test", "-P"] + [f"{s}/{b}" for s, b in pairs]
print("| " + " | ".join(head) + " |")
print("|" + "|".join("---" for _ in head) + "|")
for test, depth in sorted({(k[0], k[1]) for k in runs}, key=lambda k: (k[1], k[0])):
    cells = [test, str(depth)]
    for s, b in pairs:
        a, c = by_round.get((test, depth, s), {}), by_round.get((test, depth, b), {})
        ratios = sorted(a[r] / c[r] for r in a if r in c and c[r])
        if not ratios:
            cells.append("n/a")
            continue
        ahead = sum(1 for x in ratios if x >= 1.0)
        cells.append(
            f"{ratios[0]:.2f} / {statistics.median(ratios):.2f} / {ratios[-1]:.2f}"
            f" ({ahead} of {len(ratios)})"
        )
    print("| " + " | ".join(cells) + " |")
PY

python3 - "$CPU" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print()
print("CPU per request (GET and SET together; medians over the rounds), from /proc, and")
print("redis-benchmark's own CPU over its wall time (near 1.00: the load generator, not")
print("the targets, sets the rps):")
print()
print("| target | -P | its CPU per request, us | Redis's CPU per request, us | redis-benchmark CPU / wall |")
print("|---|---|---|---|---|")
keys = []
for r in rows:
    k = (r["target"], int(r["depth"]))
    if k not in keys:
        keys.append(k)
for target, depth in sorted(keys, key=lambda k: (k[1], keys.index(k))):
    sel = [r for r in rows if (r["target"], int(r["depth"])) == (target, depth)]
    per = lambda f: statistics.median(float(r[f]) / int(r["requests"]) * 1e6 for r in sel)
    share = statistics.median(float(r["bench_cpu"]) / float(r["bench_wall"]) for r in sel if float(r["bench_wall"]))
    own = "(same)" if target == "direct" else f"{per('target_cpu'):.2f}"
    print(f"| {target} | {depth} | {own} | {per('redis_cpu'):.2f} | {share:.2f} |")
PY

if [ "$SKIP_SIDECAR" != 1 ] && [ "$IDLE_CLIENTS" -gt 0 ]; then
    echo
    echo "### Idle client connections"
    echo
    python3 "$ROOT/benches/idle_clients.py" --pid "$SIDECAR_PID" \
        --port "$SIDECAR_PORT" --count "$IDLE_CLIENTS"
fi
