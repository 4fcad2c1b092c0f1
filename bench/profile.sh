#!/usr/bin/env bash
# Profile one Concord node (region us, 1 region) under redis-benchmark with perf.
#   bench/profile.sh [TEST] [PIPELINE] [FSYNC]     defaults: set 16 batch
# Writes $OUT/profile_<test>_P<p>_<fsync>.txt: the flat profile (self time by symbol) and the
# call-graph (children) view, top entries. Needs perf (apt-get install linux-perf).
# CALLS=dwarf records DWARF call chains instead (the release build has no frame pointers, so `-g`
# alone gives flat profiles) and appends where the main functions' time goes (bench/callers.py).
source "$(dirname "$0")/lib.sh"
TEST="${1:-set}"; P="${2:-16}"; FSYNC="${3:-batch}"
BASE=27601
TMP="$(mktemp -d /tmp/concord-bench-prof.XXXXXX)"
command -v perf >/dev/null || apt-get install -y linux-perf >/dev/null
ensure_concord
start_concord "$TMP/c" "$BASE" us --fsync "$FSYNC"
SERVE_PID="$(pgrep -P "$CONCORD_PID" | head -1)"
log "profiling concord serve pid $SERVE_PID: $TEST -P $P fsync $FSYNC (load $(loadavg))"
redis-benchmark -p "$BASE" -t "$TEST" -c 50 -n 2000000 -r 100000 -P "$P" -q >"$TMP/bench.txt" 2>&1 &
BENCH=$!
BENCH_PIDS+=("$BENCH")
sleep 1
if [ "${CALLS:-}" = dwarf ]; then
    perf record -F 199 --call-graph dwarf,16384 -p "$SERVE_PID" -o "$TMP/perf.data" -- sleep 5 2>"$TMP/perf.err" || true
else
    perf record -F 499 -g -p "$SERVE_PID" -o "$TMP/perf.data" -- sleep 8 2>"$TMP/perf.err" || true
fi
stop_pid "$BENCH"
REPORT="$OUT/profile_${TEST}_P${P}_${FSYNC}${CALLS:+_$CALLS}.txt"
set +o pipefail  # `head` closes the pipes early
{
    echo "# concord serve under redis-benchmark -t $TEST -c 50 -r 100000 -P $P, fsync $FSYNC; load $(loadavg)"
    echo "## self time by symbol (perf report --no-children)"
    perf report -i "$TMP/perf.data" --no-children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -40
    echo
    echo "## inclusive time by symbol (perf report --children)"
    perf report -i "$TMP/perf.data" --children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9.]+% +[0-9.]+%' | head -60
    echo
    echo "## by thread (comm)"
    perf report -i "$TMP/perf.data" --no-children --sort comm --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -10
    echo
    echo "## callers of the top symbols (perf report --no-children -G, caller graph)"
    perf report -i "$TMP/perf.data" --no-children --sort symbol --stdio -G 2>/dev/null | grep -v '^$' | head -120
    if [ "${CALLS:-}" = dwarf ]; then
        echo
        echo "## where the main functions' time goes (bench/callers.py, % of all samples)"
        perf script -i "$TMP/perf.data" 2>/dev/null >"$TMP/stacks.txt"
        for f in Node::commit_pending Store::write_batch Engine::execute Node::absorb Connection::run; do
            python3 "$BENCH_DIR/callers.py" "$TMP/stacks.txt" "$f" | head -8
        done
    fi
} >"$REPORT"
set -o pipefail
stop_pid "$CONCORD_PID"
rm -rf "$TMP"
log "wrote $REPORT"
head -30 "$REPORT"
