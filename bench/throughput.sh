#!/usr/bin/env bash
# Throughput: redis-benchmark against redis-server (appendonly yes, appendfsync everysec) and
# against Concord (one region, fsync batch and everysec; then three regions, benchmarking region us).
# Writes $OUT/throughput.csv and prints ops/s and the ratio Concord / Redis per command.
#   bench/throughput.sh            # full run (-n 100000)
#   N=20000 bench/throughput.sh    # quicker
# redis-benchmark's hset and sadd tests write ONE key (myhash / myset) growing to ~63k fields
# (-r 100000); they run with N_ONEKEY requests (default: N) against every target, Redis included.
source "$(dirname "$0")/lib.sh"
N="${N:-100000}"
N_ONEKEY="${N_ONEKEY:-$N}"
TESTS="${TESTS:-set,get,incr}"
TESTS_ONEKEY="${TESTS_ONEKEY:-hset,sadd}"
WAIT="${LOAD_WAIT_S:-20}"
PIPES="${PIPES:-1 16}"
TARGETS="${TARGETS:-redis concord-1r-batch concord-1r-everysec concord-3r-batch concord-3r-everysec}"
BASE=27101
RPORT=26379
CSV="$OUT/throughput.csv"
TMP="$(mktemp -d /tmp/concord-bench-tp.XXXXXX)"
ensure_redis
ensure_concord
echo "target,pipeline,test,requests,rps,avg_ms,p50_ms,p99_ms,load1,load5,load15" >"$CSV"

run_bench() { # target port
    local target="$1" port="$2" p line
    for p in $PIPES; do
        local tests n
        for tests in "$TESTS" "$TESTS_ONEKEY"; do
            [ -n "$tests" ] || continue
            n="$N"; [ "$tests" = "$TESTS_ONEKEY" ] && n="$N_ONEKEY"
            wait_for_low_load 1.5 "$WAIT"
            local load; load="$(loadavg)"
            log "$target -P $p -t $tests -n $n (load $load)"
            timeout 600 redis-benchmark -h 127.0.0.1 -p "$port" -t "$tests" -c 50 -n "$n" -r 100000 -P "$p" --csv 2>/dev/null |
                tail -n +2 | tr -d '"' | while IFS=, read -r test rps avg min p50 p95 p99 max; do
                    echo "$target,$p,$test,$n,$rps,$avg,$p50,$p99,${load// /,}" >>"$CSV"
                done
        done
    done
}

for target in $TARGETS; do
    case "$target" in
    redis)
        start_redis "$RPORT" "$TMP/redis"
        run_bench redis "$RPORT"
        redis-cli -p "$RPORT" INFO persistence | grep -E 'aof_enabled|aof_current_size' >&2 || true
        stop_pid "$REDIS_PID"
        ;;
    concord-1r-*)
        start_concord "$TMP/$target" "$BASE" us --fsync "${target##*-}"
        run_bench "$target" "$BASE"
        stop_pid "$CONCORD_PID"
        ;;
    concord-3r-*)
        start_concord "$TMP/$target" "$BASE" us,eu,ap --fsync "${target##*-}"
        run_bench "$target" "$BASE"
        # how far the other regions were behind when the benchmark ended
        curl -s "http://127.0.0.1:$((BASE + 1000))/v1/status" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("after run: us applied", d["applied"], "peers", [(p["region"], p["lag_ops"], p["lag_ms"]) for p in d["peers"]])' >&2 || true
        stop_pid "$CONCORD_PID"
        ;;
    esac
done
rm -rf "$TMP"
python3 "$BENCH_DIR/report_throughput.py" "$CSV"
