#!/usr/bin/env python3
"""Storage per key: N keys (default 1,000,000; KEYS=200000 for a quicker run) of 100-byte values
written on region us of a 3-region cluster (fsync batch) by a pipelined loader (batches of 1,000
SETs, keys `key:%012d`, so exactly N distinct keys), then waited until eu and ap have applied them.
Reported per region: INFO persistence concord_disk_bytes, `du` of the data dir, and bytes per key;
metadata per key = bytes per key - (16-byte key + 100-byte value). The same keys are loaded into
redis-server (appendonly yes, everysec) for comparison: AOF size and used_memory per key.
"""
import json, os, shutil, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import *

N = int(os.environ.get("KEYS", "1000000"))
BASE = 27501
REGIONS = ["us", "eu", "ap"]
VALUE = b"v" * 100


def load(port, n):
    c = Resp(port, timeout=120)
    t0 = time.monotonic()
    for start in range(0, n, 1000):
        c.send(b"".join(Resp.encode("SET", b"key:%012d" % i, VALUE) for i in range(start, min(n, start + 1000))))
        for _ in range(start, min(n, start + 1000)):
            r = c.read()
            if isinstance(r, Exception):
                raise r
    dt = time.monotonic() - t0
    c.close()
    return dt


def du(path):
    return int(subprocess.run(["du", "-sb", path], capture_output=True, text=True).stdout.split()[0])


def info_field(port, section, field):
    c = Resp(port)
    txt = c.cmd("INFO", section).decode()
    c.close()
    for line in txt.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1]
    return None


def main():
    res = {"keys": N, "value_bytes": 100, "key_bytes": 16}
    with Procs() as procs:
        p, d = start_concord(procs, BASE, REGIONS)
        res["load_avg_start"] = wait_for_low_load()
        dt = load(BASE, N)
        res["load_seconds"] = round(dt, 1)
        res["load_rate_per_s"] = round(N / dt)
        log(f"loaded {N} keys into us in {dt:.1f} s ({N / dt:.0f}/s)")
        t0 = time.monotonic()
        while time.monotonic() - t0 < 600:
            vecs = [json.dumps(status(BASE + 1000 + i)["applied"], sort_keys=True) for i in range(3)]
            if len(set(vecs)) == 1:
                break
            time.sleep(0.5)
        res["replicated_after_load_s"] = round(time.monotonic() - t0, 1)
        time.sleep(3)  # let log truncation (once a second) run
        res["regions"] = {}
        for i, r in enumerate(REGIONS):
            disk = int(info_field(BASE + i, "persistence", "concord_disk_bytes"))
            keys = int(Resp(BASE + i).cmd("DBSIZE"))
            res["regions"][r] = {"keys": keys, "concord_disk_bytes": disk}
        res["load_avg_end"] = loadavg()
        procs.stop(p)
        for i, r in enumerate(REGIONS):
            size = du(os.path.join(d, r))
            e = res["regions"][r]
            e["du_bytes_after_stop"] = size
            e["disk_bytes_per_key"] = round(e["concord_disk_bytes"] / N, 1)
            e["du_bytes_per_key"] = round(size / N, 1)
            e["metadata_bytes_per_key"] = round(e["concord_disk_bytes"] / N - 116, 1)
        shutil.rmtree(d, ignore_errors=True)
    # Redis, for comparison
    tmp = tempfile.mkdtemp(prefix="redis-storage-")
    with Procs() as procs:
        rp = procs.start(["redis-server", "--port", "26382", "--bind", "127.0.0.1", "--appendonly", "yes",
                          "--appendfsync", "everysec", "--dir", tmp, "--daemonize", "no", "--save", ""],
                         os.path.join(tmp, "redis.log"))
        wait_port(26382)
        dt = load(26382, N)
        time.sleep(2)
        mem = int(info_field(26382, "memory", "used_memory"))
        procs.stop(rp)
        aof = du(tmp) - os.path.getsize(os.path.join(tmp, "redis.log"))
        res["redis"] = {"load_seconds": round(dt, 1), "aof_dir_bytes": aof, "aof_bytes_per_key": round(aof / N, 1),
                        "used_memory_bytes": mem, "used_memory_per_key": round(mem / N, 1)}
    shutil.rmtree(tmp, ignore_errors=True)
    with open(os.path.join(OUT, "storage.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
