#!/usr/bin/env bash
# Run every Concord benchmark and write a report to bench/results/REPORT.md.
#   bench/run-all.sh                 # full run (~25 min on 2 cores)
#   QUICK=1 bench/run-all.sh         # smaller: N=20000, 20 s partition, 200k keys, 5 s lag runs
# Needs: a Rust toolchain, python3 (+ pip install matplotlib for the plots), apt-get for
# redis-server / etcd-server / linux-perf when missing. Every server binds 127.0.0.1 and is
# stopped by PID when its step ends.
source "$(dirname "$0")/lib.sh"
cd "$REPO"
ensure_concord
ensure_redis
ensure_etcd || log "etcd not installable: the etcd rows will be missing"
python3 -c 'import matplotlib' 2>/dev/null || pip install -q matplotlib || log "no matplotlib: no plots"
if [ -n "${QUICK:-}" ]; then
    export N=20000 PARTITION_S=20 KEYS=200000 DURATION=5 N_LOCAL=500 N_REMOTE=100
fi
REPORT="$OUT/REPORT.md"
{
    echo "# Concord benchmark report"
    echo
    echo "date: $(date -u +%FT%TZ); commit: $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)')"
    echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); load at start $(loadavg)"
    echo "redis: $(redis-server --version | awk '{print $3}'); etcd: $(etcd --version 2>/dev/null | awk '/etcd Version/{print $3}')"
} >"$REPORT"

step() { log "== $1"; echo -e "\n## $1 (load at start $(loadavg))\n" >>"$REPORT"; }
# SKIP="throughput lag" skips steps (their earlier results in bench/results are kept and reported).
skip() { [[ " ${SKIP:-} " == *" $1 "* ]]; }

step "Throughput (bench/throughput.sh)"
if skip throughput; then python3 "$BENCH_DIR/report_throughput.py" "$OUT/throughput.csv"; else bash "$BENCH_DIR/throughput.sh"; fi | tee -a "$REPORT"

step "Geo write latency (bench/geo_latency.py)"
echo '```' >>"$REPORT"; if skip geo; then echo "(skipped: earlier results in bench/results)"; else python3 "$BENCH_DIR/geo_latency.py"; fi | tee -a "$REPORT"; echo '```' >>"$REPORT"

step "Replication lag (bench/lag.py)"
echo '```' >>"$REPORT"; if skip lag; then echo "(skipped: earlier results in bench/results)"; else python3 "$BENCH_DIR/lag.py"; fi | tee -a "$REPORT"; echo '```' >>"$REPORT"

step "Convergence (bench/convergence.py)"
echo '```' >>"$REPORT"; if skip convergence; then echo "(skipped: earlier results in bench/results)"; else python3 "$BENCH_DIR/convergence.py"; fi | tee -a "$REPORT"; echo '```' >>"$REPORT"

step "Storage (bench/storage.py)"
echo '```' >>"$REPORT"; if skip storage; then echo "(skipped: earlier results in bench/results)"; else python3 "$BENCH_DIR/storage.py"; fi | tee -a "$REPORT"; echo '```' >>"$REPORT"

step "Micro-benchmarks (cargo bench -p concord-core)"
echo '```' >>"$REPORT"
skip micro || cargo bench -p concord-core --bench core 2>&1 | grep -E '^[a-z_]+/|time:|sizes:' | tee -a "$REPORT"
echo '```' >>"$REPORT"

step "Profile (bench/profile.sh)"
if ! skip profile; then
    bash "$BENCH_DIR/profile.sh" set 16 batch >/dev/null
    bash "$BENCH_DIR/profile.sh" set 1 batch >/dev/null
    bash "$BENCH_DIR/profile.sh" hset 16 batch >/dev/null
fi
for f in "$OUT"/profile_*.txt; do echo '```'; head -25 "$f"; echo '```'; done >>"$REPORT"

python3 "$BENCH_DIR/plot.py" || true
log "report: $REPORT"
