# Shared helpers for the bench scripts (sourced, not run).
# Every process a script starts is recorded in BENCH_PIDS and stopped by PID on exit.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
CONCORD="${CONCORD:-$REPO/target/release/concord}"
OUT="${OUT:-$BENCH_DIR/results}"
mkdir -p "$OUT"
BENCH_PIDS=()

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# "1.23 0.98 0.80" (1, 5, 15 minute load averages).
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# Wait (bounded) until the 1-minute load average is at most $1 (default 1.5); give up after $2 s.
wait_for_low_load() {
    local max="${1:-1.5}" limit="${2:-120}" waited=0
    while awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v m="$max" 'BEGIN{exit !(l>m)}'; do
        if [ "$waited" -ge "$limit" ]; then
            log "load $(loadavg) still above $max after ${limit}s; measuring anyway (recorded)"
            return 0
        fi
        sleep 5; waited=$((waited + 5))
    done
}

ensure_concord() {
    if [ ! -x "$CONCORD" ]; then
        log "building concord (release) once"
        (cd "$REPO" && cargo build --release)
    fi
}

ensure_redis() {
    if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
        log "installing redis-server"
        apt-get install -y redis-server redis-tools >/dev/null
    fi
}

ensure_etcd() {
    if ! command -v etcd >/dev/null; then
        log "installing etcd-server / etcd-client"
        DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server etcd-client >/dev/null || return 1
    fi
}

# wait_port PORT [timeout_s]
wait_port() {
    local port="$1" limit="${2:-30}" i=0
    while ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        i=$((i + 1))
        if [ "$i" -gt $((limit * 10)) ]; then log "port $port did not open"; return 1; fi
        sleep 0.1
    done
}

# wait until a RESP port answers a write (a fresh multi-region node refuses writes until caught up)
wait_writable() {
    local port="$1" i=0
    wait_port "$port" 30
    while [ "$(redis-cli -p "$port" SET __bench_ready 1 2>/dev/null)" != "OK" ]; do
        i=$((i + 1)); [ "$i" -gt 300 ] && { log "port $port not writable"; return 1; }
        sleep 0.1
    done
    redis-cli -p "$port" DEL __bench_ready >/dev/null
}

# start_concord DATA_DIR BASE_PORT REGIONS [extra up flags...]; sets CONCORD_PID
start_concord() {
    local dir="$1" base="$2" regions="$3"; shift 3
    mkdir -p "$dir"
    "$CONCORD" up --regions "$regions" --data-dir "$dir" --base-port "$base" "$@" \
        >"$dir/up.log" 2>&1 &
    CONCORD_PID=$!
    BENCH_PIDS+=("$CONCORD_PID")
    local n i
    n=$(echo "$regions" | tr ',' '\n' | wc -l)
    for ((i = 0; i < n; i++)); do wait_writable $((base + i)); done
}

# stop_pid PID: SIGTERM, wait up to 15 s, then SIGKILL.
stop_pid() {
    local pid="$1" i=0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
        i=$((i + 1))
        if [ "$i" -gt 150 ]; then kill -KILL "$pid" 2>/dev/null || true; break; fi
        sleep 0.1
    done
    wait "$pid" 2>/dev/null || true
}

stop_all() {
    local p
    for p in "${BENCH_PIDS[@]:-}"; do [ -n "$p" ] && stop_pid "$p"; done
    BENCH_PIDS=()
}
trap stop_all EXIT

# start_redis PORT DIR [extra args]; sets REDIS_PID
start_redis() {
    local port="$1" dir="$2"; shift 2
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --appendonly yes --appendfsync everysec \
        --dir "$dir" --daemonize no --save '' "$@" >"$dir/redis.log" 2>&1 &
    REDIS_PID=$!
    BENCH_PIDS+=("$REDIS_PID")
    wait_port "$port" 30
}
