#!/usr/bin/env python3
"""Replication lag: from a write acknowledged in region us to the value visible in region eu.

Method: a 3-region cluster (`concord up`, fsync batch, --wan-delay-ms 0 or 30). One writer process
SETs one key `lag:clock:<run>` on us with the values 1, 2, 3, ... at a target rate (pipelined
batches every millisecond: 1 per ms for 1k/s, 10 per ms for 10k/s; for "max", batches of 100
back to back) and records when each reply arrives (the ack). One reader process polls
`GET lag:clock:<run>` on eu in a tight loop and records when each new value is first seen. Ops of
one origin are applied in order, so value v visible means every write <= v is: the lag of write s
is (first poll time that returned >= s) - (ack time of s). Both processes use CLOCK_MONOTONIC.
The poll interval (one GET round trip, ~0.1 ms) bounds the error.

Writes $OUT/lag.csv (summary) and $OUT/lag_<delay>ms_<rate>.csv (ack time, lag) per run.
"""
import multiprocessing as mp, os, shutil, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import *

DURATION = float(os.environ.get("DURATION", "10"))
RATES = os.environ.get("RATES", "1000,10000,max").split(",")
DELAYS = [int(x) for x in os.environ.get("DELAYS", "0,30").split(",")]
BASE = 27301


def writer(port, key, rate, duration, q):
    c = Resp(port)
    acks, sends = [], []
    seq = 0
    t0 = time.monotonic()
    if rate == "max":
        batch, interval = 100, 0.0
    else:
        r = int(rate)
        batch = max(1, r // 1000)
        interval = batch / r
    nxt = t0
    while True:
        now = time.monotonic()
        if now - t0 >= duration:
            break
        if interval and now < nxt:
            time.sleep(nxt - now)
        nxt += interval
        data = b"".join(Resp.encode("SET", key, str(seq + i + 1)) for i in range(batch))
        ts = time.monotonic()
        c.send(data)
        for i in range(batch):
            r = c.read()
            if isinstance(r, Exception):
                raise r
            acks.append(time.monotonic())
            sends.append(ts)
        seq += batch
    c.close()
    q.put((t0, sends, acks))


def reader(port, key, stop_at_value, deadline_s, q, ready):
    c = Resp(port)
    seen = []  # (time, value) when the value changed
    last = 0
    ready.set()
    t_end = time.monotonic() + deadline_s
    while time.monotonic() < t_end:
        v = c.cmd("GET", key)
        t = time.monotonic()
        if v is not None:
            v = int(v)
            if v != last:
                seen.append((t, v))
                last = v
                if stop_at_value.value and v >= stop_at_value.value:
                    break
    c.close()
    q.put(seen)


def run(delay, rate, run_id):
    key = f"lag:clock:{run_id}"
    q_w, q_r = mp.Queue(), mp.Queue()
    stop_val = mp.Value("q", 0)
    ready = mp.Event()
    load = wait_for_low_load()  # before the reader starts polling
    rd = mp.Process(target=reader, args=(BASE + 1, key, stop_val, DURATION + 40, q_r, ready))
    rd.start()
    ready.wait(10)
    wr = mp.Process(target=writer, args=(BASE, key, rate, DURATION, q_w))
    wr.start()
    t0, sends, acks = q_w.get()
    wr.join()
    stop_val.value = len(acks)
    seen = q_r.get()
    rd.join()
    # first time each seq became visible
    lags, lags_send, series = [], [], []
    j = 0
    missing = 0
    for s in range(1, len(acks) + 1):
        while j < len(seen) and seen[j][1] < s:
            j += 1
        if j == len(seen):
            missing = len(acks) - s + 1
            break
        tv = seen[j][0]
        lag = (tv - acks[s - 1]) * 1000
        lags.append(lag)
        lags_send.append((tv - sends[s - 1]) * 1000)
        series.append((acks[s - 1] - t0, lag))
    achieved = len(acks) / DURATION
    with open(os.path.join(OUT, f"lag_{delay}ms_{rate}.csv"), "w") as f:
        f.write("t_s,lag_ms\n")
        step = max(1, len(series) // 20000)
        for t, l in series[::step]:
            f.write(f"{t:.4f},{l:.3f}\n")
    s = summary(lags)
    ss = summary(lags_send)
    log(f"delay {delay} ms, rate {rate}: achieved {achieved:.0f} w/s, lag from ack p50 {s['p50']:.2f} p99 {s['p99']:.2f} "
        f"max {s['max']:.2f} ms (from send p50 {ss['p50']:.2f} p99 {ss['p99']:.2f}); polls saw {len(seen)} values; "
        f"missing {missing}; load {load}")
    return (delay, rate, achieved, s, ss, missing, load)


def main():
    rows = []
    run_id = int(time.time())
    for delay in DELAYS:
        with Procs() as procs:
            p, d = start_concord(procs, BASE, ["us", "eu", "ap"], ["--wan-delay-ms", str(delay)])
            time.sleep(2)
            for rate in RATES:
                run_id += 1
                rows.append(run(delay, rate, run_id))
                time.sleep(1)
            procs.stop(p)
            shutil.rmtree(d, ignore_errors=True)
    with open(os.path.join(OUT, "lag.csv"), "w") as f:
        f.write("delay_ms,target_rate,achieved_wps,n,p50_ms,p99_ms,max_ms,mean_ms,send_p50_ms,send_p99_ms,missing,load1,load5,load15\n")
        for delay, rate, ach, s, ss, missing, load in rows:
            f.write(f"{delay},{rate},{ach:.0f},{s['n']},{s['p50']:.3f},{s['p99']:.3f},{s['max']:.3f},{s['mean']:.3f},"
                    f"{ss['p50']:.3f},{ss['p99']:.3f},{missing},{load.replace(' ', ',')}\n")
    print(open(os.path.join(OUT, "lag.csv")).read())


if __name__ == "__main__":
    main()
