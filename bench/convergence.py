#!/usr/bin/env python3
"""Convergence after a partition.

A 3-region cluster (fsync batch, no WAN delay). Region us is cut off from eu and ap with the
admin API (PUT /v1/admin/links/{eu,ap} {"partitioned": true} on us) for PARTITION_S seconds
(default 60) while one writer on us and one on eu each write RATE ops/s (default 1000): SETs over
2,000 shared keys, INCR of a shared counter and SADD to a shared set, so both sides write the same
keys. Then the links are healed and /v1/status of all three regions is polled every 20 ms until
their applied vectors are equal. Reported: time from heal to equal vectors, the bytes and ops
sent on all links from heal to convergence (sums of peers[].bytes_sent / ops_sent deltas), and a
check that the regions then agree (DBSIZE, the counter, SCARD, a sample of keys).
"""
import json, multiprocessing as mp, os, shutil, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import *

PARTITION_S = float(os.environ.get("PARTITION_S", "60"))
RATE = int(os.environ.get("RATE", "1000"))
BASE = 27401
REGIONS = ["us", "eu", "ap"]


def writer(port, tag, rate, duration, q):
    c = Resp(port)
    n = 0
    t0 = time.monotonic()
    nxt = t0
    while time.monotonic() - t0 < duration:
        now = time.monotonic()
        if now < nxt:
            time.sleep(nxt - now)
        nxt += 10 / rate
        cmds = []
        for i in range(10):
            k = n + i
            if k % 10 == 0:
                cmds.append(Resp.encode("INCR", "conv:counter"))
            elif k % 10 == 1:
                cmds.append(Resp.encode("SADD", "conv:set", f"{tag}{k}"))
            else:
                cmds.append(Resp.encode("SET", f"conv:key:{k % 2000}", f"{tag}-{k}-" + "x" * 80))
        c.send(b"".join(cmds))
        for _ in cmds:
            r = c.read()
            if isinstance(r, Exception):
                raise r
        n += 10
    c.close()
    q.put(n)


def totals(sts):
    b = sum(p["bytes_sent"] for s in sts for p in s["peers"])
    o = sum(p["ops_sent"] for s in sts for p in s["peers"])
    return b, o


def main():
    with Procs() as procs:
        p, d = start_concord(procs, BASE, REGIONS)
        http = {r: BASE + 1000 + i for i, r in enumerate(REGIONS)}
        time.sleep(2)
        load_before = wait_for_low_load()
        for peer in ("eu", "ap"):
            st, js = http_json(http["us"], "PUT", f"/v1/admin/links/{peer}", {"partitioned": True})
            assert st == 200, js
        log(f"partitioned us from eu and ap for {PARTITION_S:.0f} s; writing {RATE}/s on us and on eu (load {load_before})")
        q = mp.Queue()
        ws = [mp.Process(target=writer, args=(BASE + i, r, RATE, PARTITION_S, q)) for i, r in enumerate(["us", "eu"])]
        for w in ws:
            w.start()
        written = [q.get(), q.get()]
        for w in ws:
            w.join()
        time.sleep(0.5)
        sts = [status(http[r]) for r in REGIONS]
        b0, o0 = totals(sts)
        applied_before = {r: s["applied"] for r, s in zip(REGIONS, sts)}
        load_heal = loadavg()
        log(f"written {written}; applied before heal {applied_before}")
        t_heal = time.monotonic()
        for peer in ("eu", "ap"):
            http_json(http["us"], "PUT", f"/v1/admin/links/{peer}", {})
        series = []
        converged = None
        while time.monotonic() - t_heal < 120:
            sts = [status(http[r]) for r in REGIONS]
            t = time.monotonic() - t_heal
            vecs = [json.dumps(s["applied"], sort_keys=True) for s in sts]
            # ops still missing, summed over regions, against the join of all vectors
            top = {}
            for s in sts:
                for k, v in s["applied"].items():
                    top[k] = max(top.get(k, 0), v)
            missing = sum(top[k] - s["applied"].get(k, 0) for s in sts for k in top)
            series.append((t, missing))
            if len(set(vecs)) == 1:
                converged = t
                break
            time.sleep(0.02)
        b1, o1 = totals(sts)
        # a second later, once acks and vector gossip of the catch-up have gone out too
        time.sleep(1.0)
        b2, o2 = totals([status(http[r]) for r in REGIONS])
        # do the regions agree?
        checks = {}
        for i, r in enumerate(REGIONS):
            c = Resp(BASE + i)
            checks[r] = (c.cmd("DBSIZE"), c.cmd("GET", "conv:counter"), c.cmd("SCARD", "conv:set"),
                         tuple(c.cmd("GET", f"conv:key:{k}") for k in range(0, 2000, 97)))
            c.close()
        agree = len(set(checks.values())) == 1
        procs.stop(p)
        shutil.rmtree(d, ignore_errors=True)
    res = {
        "partition_s": PARTITION_S, "rate_per_side": RATE, "written": {"us": written[0], "eu": written[1]},
        "applied_before_heal": applied_before, "converged_after_s": converged,
        "bytes_heal_to_converged": b1 - b0, "ops_sent_heal_to_converged": o1 - o0,
        "bytes_heal_plus_1s": b2 - b0, "ops_sent_heal_plus_1s": o2 - o0,
        "regions_agree": agree, "check": {r: [str(x) for x in v[:3]] for r, v in checks.items()},
        "load_before": load_before, "load_at_heal": load_heal,
    }
    with open(os.path.join(OUT, "convergence.json"), "w") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(OUT, "convergence_series.csv"), "w") as f:
        f.write("t_s,ops_missing\n")
        for t, m in series:
            f.write(f"{t:.3f},{m}\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
