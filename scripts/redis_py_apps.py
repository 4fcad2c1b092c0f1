"""A leaderboard and a sliding-window rate limiter, written with redis-py as applications write
them, run against a three-region Concord cluster (`concord up`) with a simulated WAN delay.

    scripts/redis-py-apps            (builds concord debug, uses target/redis-py/venv)

What it shows (issue 11, "Must show" 4):
- leaderboard: players' scores incremented concurrently from every region (ZINCRBY) add up to
  exactly the sum of all increments in every region, and the top of the board (ZREVRANGE … WITHSCORES)
  reads the same everywhere once replication catches up;
- rate limiter: the classic ZREMRANGEBYSCORE / ZCARD / ZADD / PEXPIRE window admits at most `limit`
  requests per window in one region; regions decide on their own view, so with the three regions
  hammering one user at once, at most `regions × limit` are admitted (active-active: no global
  lock), and every region ends up with the same window contents.
"""

import os
import random
import subprocess
import sys
import tempfile
import threading
import time

import redis

REGIONS = ["us", "eu", "ap"]


def wait_for(what, timeout_s, check):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = check()
        if value is not None:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def leaderboard(clients):
    players = [f"player:{i}" for i in range(20)]
    expected = {p: 0 for p in players}
    lock = threading.Lock()

    def play(region_index):
        r = clients[region_index]
        rng = random.Random(region_index)
        for _ in range(300):
            p = rng.choice(players)
            points = rng.randint(1, 10)
            r.zincrby("board", points, p)
            with lock:
                expected[p] += points

    threads = [threading.Thread(target=play, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    def converged():
        boards = [r.zrange("board", 0, -1, withscores=True) for r in clients]
        return boards[0] if all(b == boards[0] for b in boards) else None

    board = dict(wait_for("the leaderboards to converge", 30, converged))
    assert board == {p.encode(): float(s) for p, s in expected.items() if s}, (board, expected)
    tops = [r.zrevrange("board", 0, 2, withscores=True) for r in clients]
    assert all(t == tops[0] for t in tops), tops
    print(f"leaderboard: {sum(expected.values())} points from 900 concurrent ZINCRBYs in 3 regions, "
          f"identical everywhere; top 3: {tops[0]}")


def allow(r, user, limit, window_ms):
    """The sliding-window log limiter, as the redis-py docs and blog posts write it."""
    key = f"rl:{user}"
    now_ms = int(time.time() * 1000)
    pipe = r.pipeline(transaction=False)
    pipe.zremrangebyscore(key, "-inf", now_ms - window_ms)
    pipe.zcard(key)
    _, count = pipe.execute()
    if count >= limit:
        return False
    pipe = r.pipeline(transaction=False)
    pipe.zadd(key, {f"{now_ms}-{random.random()}": now_ms})
    pipe.pexpire(key, window_ms)
    pipe.execute()
    return True


def rate_limiter(clients):
    limit, window_ms = 10, 60_000
    # One region alone: exactly `limit` admitted.
    admitted = sum(allow(clients[0], "solo", limit, window_ms) for _ in range(25))
    assert admitted == limit, admitted
    # Every region at once against one user.
    results = [0] * len(clients)

    def hammer(i):
        results[i] = sum(allow(clients[i], "shared", limit, window_ms) for _ in range(25))

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(n <= limit for n in results), results
    assert limit <= sum(results) <= limit * len(clients), results

    def converged():
        cards = [r.zcard("rl:shared") for r in clients]
        return cards[0] if all(c == cards[0] for c in cards) else None

    card = wait_for("the windows to converge", 30, converged)
    assert card == sum(results), (card, results)
    print(f"rate limiter: limit {limit}/window; alone {admitted} admitted; three regions at once "
          f"admitted {results} (at most {limit} each, {sum(results)} in all); every region's window "
          f"holds {card}")


def free_base():
    """A base port whose RESP, HTTP and peer ports (base+i, +1000+i, +2000+i) are all free now."""
    import socket
    for _ in range(100):
        base = random.randint(20000, 40000)
        ports = [base + off + i for off in (0, 1000, 2000) for i in range(len(REGIONS))]
        try:
            held = []
            for port in ports:
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                held.append(s)
            for s in held:
                s.close()
            return base
        except OSError:
            for s in held:
                s.close()
    raise RuntimeError("no free base port")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    binary = os.environ.get("CONCORD_BIN", os.path.join(root, "target", "debug", "concord"))
    base = int(os.environ.get("BASE_PORT", "0")) or free_base()
    with tempfile.TemporaryDirectory() as tmp:
        log = open(os.path.join(tmp, "up.log"), "w")
        proc = subprocess.Popen(
            [binary, "up", "--regions", ",".join(REGIONS), "--data-dir", os.path.join(tmp, "data"),
             "--base-port", str(base), "--wan-delay-ms", "30"],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            clients = [redis.Redis(port=base + i, socket_timeout=10) for i in range(len(REGIONS))]

            def ready():
                try:
                    return all(c.ping() for c in clients) or None
                except redis.exceptions.ConnectionError:
                    return None

            wait_for("the cluster to start", 60, ready)
            leaderboard(clients)
            rate_limiter(clients)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
