#!/usr/bin/env python3
"""Geo write latency with 30 ms one-way delay between regions (DELAY_MS to change it).

Measures, one client doing sequential writes and timing each from send to reply:
  concord-local      Concord, 3 regions, --wan-delay-ms 30, RESP SET on region us (ack=local)
  concord-majority   the same cluster, HTTP PUT /v1/kv/{key}?ack=majority on us
  concord-all        the same, ?ack=all
  concord-local-everysec  a second cluster with --fsync everysec (like redis-local's AOF everysec)
  etcd-leader        3-member etcd 3.4, members linked through bench/delayproxy.py (30 ms each
                     way on every member-to-member message), client on the leader's client port
  etcd-follower      the same, client on a follower's client port (the follower forwards)
  redis-local        redis-server (appendonly yes, everysec), client in the same region
  redis-remote       the same primary written from another region: client through a 30 ms proxy
Raw samples (ms) go to $OUT/latency_<name>.txt, the summary to $OUT/latency.csv.
"""
import base64, http.client, json, os, shutil, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import *

DELAY = int(os.environ.get("DELAY_MS", "30"))
N_LOCAL = int(os.environ.get("N_LOCAL", "2000"))
N_REMOTE = int(os.environ.get("N_REMOTE", "200"))
ONLY = os.environ.get("ONLY", "concord,etcd,redis").split(",")
BASE = 27201
results = []


def record(name, samples, load, note=""):
    with open(os.path.join(OUT, f"latency_{name}.txt"), "w") as f:
        f.write("\n".join(f"{x:.4f}" for x in samples) + "\n")
    s = summary(samples)
    results.append((name, s, load, note))
    log(f"{name}: n={s['n']} p50={s['p50']:.3f} ms p99={s['p99']:.3f} ms max={s['max']:.3f} ms (load {load}) {note}")


def resp_sets(port, n, prefix):
    c = Resp(port)
    out = []
    for i in range(n):
        t = time.perf_counter()
        r = c.cmd("SET", f"{prefix}:{i % 1000}", "v" * 100)
        out.append((time.perf_counter() - t) * 1000)
        assert r == b"OK", r
    c.close()
    return out


def http_puts(port, n, prefix, ack):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out, codes = [], {}
    for i in range(n):
        t = time.perf_counter()
        c.request("PUT", f"/v1/kv/{prefix}:{i % 1000}?ack={ack}", body=b"v" * 100)
        r = c.getresponse()
        body = r.read()
        out.append((time.perf_counter() - t) * 1000)
        codes[r.status] = codes.get(r.status, 0) + 1
    c.close()
    return out, codes, body


def concord():
    with Procs() as procs:
        p, d = start_concord(procs, BASE, ["us", "eu", "ap"], ["--wan-delay-ms", str(DELAY)])
        time.sleep(2)
        resp_sets(BASE, 100, "warm")
        load = wait_for_low_load()
        record("concord-local", resp_sets(BASE, N_LOCAL, "geo"), load, "RESP SET, ack=local, fsync batch")
        for ack in ("majority", "all"):
            http_puts(BASE + 1000, 10, "warm", ack)
            load = wait_for_low_load()
            samples, codes, last = http_puts(BASE + 1000, N_REMOTE, "geo", ack)
            record(f"concord-{ack}", samples, load, f"HTTP PUT ?ack={ack}; status codes {codes}; last body {last[:160]!r}")
        procs.stop(p)
        shutil.rmtree(d, ignore_errors=True)
        # The like-for-like row for redis-local: fsync once a second, as Redis's everysec.
        p, d = start_concord(procs, BASE, ["us", "eu", "ap"], ["--wan-delay-ms", str(DELAY), "--fsync", "everysec"])
        time.sleep(2)
        resp_sets(BASE, 100, "warm")
        load = wait_for_low_load()
        record("concord-local-everysec", resp_sets(BASE, N_LOCAL, "geo"), load, "RESP SET, ack=local, fsync everysec")
        procs.stop(p)
        shutil.rmtree(d, ignore_errors=True)


def etcd_put(conn, key, value):
    body = json.dumps({"key": base64.b64encode(key.encode()).decode(),
                       "value": base64.b64encode(value.encode()).decode()})
    conn.request("POST", "/v3/kv/put", body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise RuntimeError(f"etcd put: {r.status} {data[:200]!r}")


def etcd_puts(port, n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    for i in range(n):
        t = time.perf_counter()
        etcd_put(c, f"geo:{i % 1000}", "v" * 100)
        out.append((time.perf_counter() - t) * 1000)
    c.close()
    return out


def etcd():
    if not shutil.which("etcd"):
        subprocess.run(["apt-get", "install", "-y", "etcd-server", "etcd-client"], env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                       stdout=subprocess.DEVNULL)
    if not shutil.which("etcd"):
        log("etcd could not be installed: skipping")
        return
    tmp = tempfile.mkdtemp(prefix="etcd-bench-")
    names = ["e1", "e2", "e3"]
    client = {n: 23791 + i for i, n in enumerate(names)}
    peer = {n: 23801 + i for i, n in enumerate(names)}
    proxied = {n: 23811 + i for i, n in enumerate(names)}
    cluster = ",".join(f"{n}=http://127.0.0.1:{proxied[n]}" for n in names)
    with Procs() as procs:
        args = [sys.executable, os.path.join(BENCH_DIR, "delayproxy.py")]
        for n in names:
            args += [str(proxied[n]), str(peer[n]), str(DELAY)]
        procs.start(args, os.path.join(tmp, "proxy.log"))
        for n in names:
            procs.start(["etcd", "--name", n, "--data-dir", os.path.join(tmp, n),
                         "--listen-client-urls", f"http://127.0.0.1:{client[n]}",
                         "--advertise-client-urls", f"http://127.0.0.1:{client[n]}",
                         "--listen-peer-urls", f"http://127.0.0.1:{peer[n]}",
                         "--initial-advertise-peer-urls", f"http://127.0.0.1:{proxied[n]}",
                         "--initial-cluster", cluster, "--initial-cluster-state", "new",
                         "--initial-cluster-token", "bench"], os.path.join(tmp, f"{n}.log"))
        # find the leader (bounded)
        leader = None
        for _ in range(300):
            try:
                ids = {}
                for n in names:
                    st, js = http_json(client[n], "POST", "/v3/maintenance/status", {})
                    ids[n] = (js["header"]["member_id"], js.get("leader"))
                lead_ids = {v[1] for v in ids.values()}
                if len(lead_ids) == 1 and None not in lead_ids:
                    lid = lead_ids.pop()
                    leader = next(n for n in names if ids[n][0] == lid)
                    break
            except Exception:
                pass
            time.sleep(0.1)
        if leader is None:
            log("etcd cluster did not elect a leader: skipping")
            return
        follower = next(n for n in names if n != leader)
        log(f"etcd leader {leader}, follower {follower}")
        etcd_puts(client[leader], 20)
        load = wait_for_low_load()
        record("etcd-leader", etcd_puts(client[leader], N_REMOTE), load, f"etcd {subprocess.run(['etcd', '--version'], capture_output=True, text=True).stdout.split()[2]}, client beside the leader")
        load = wait_for_low_load()
        record("etcd-follower", etcd_puts(client[follower], N_REMOTE), load, "client beside a follower")
    shutil.rmtree(tmp, ignore_errors=True)


def redis():
    tmp = tempfile.mkdtemp(prefix="redis-geo-")
    port, proxy = 26381, 26391
    with Procs() as procs:
        procs.start(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--appendonly", "yes",
                     "--appendfsync", "everysec", "--dir", tmp, "--daemonize", "no", "--save", ""],
                    os.path.join(tmp, "redis.log"))
        procs.start([sys.executable, os.path.join(BENCH_DIR, "delayproxy.py"), str(proxy), str(port), str(DELAY)],
                    os.path.join(tmp, "proxy.log"))
        wait_port(port)
        wait_port(proxy)
        resp_sets(port, 100, "warm")
        load = wait_for_low_load()
        record("redis-local", resp_sets(port, N_LOCAL, "geo"), load, "client in the primary's region")
        resp_sets(proxy, 5, "warm")
        load = wait_for_low_load()
        record("redis-remote", resp_sets(proxy, N_REMOTE, "geo"), load, f"client in another region ({DELAY} ms each way)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if "concord" in ONLY:
        concord()
    if "etcd" in ONLY:
        etcd()
    if "redis" in ONLY:
        redis()
    path = os.path.join(OUT, "latency.csv")
    old = []
    if os.path.exists(path):
        names = {r[0] for r in results}
        old = [l for l in open(path).read().splitlines()[1:] if l.split(",")[0] not in names]
    with open(path, "w") as f:
        f.write("name,n,p50_ms,p99_ms,max_ms,mean_ms,load1,load5,load15,note\n")
        for l in old:
            f.write(l + "\n")
        for name, s, load, note in results:
            f.write(f"{name},{s['n']},{s['p50']:.3f},{s['p99']:.3f},{s['max']:.3f},{s['mean']:.3f},{load.replace(' ', ',')},\"{note.replace(chr(34), chr(39))}\"\n")
    print(open(path).read())
