"""Shared helpers for the Python bench tools: a minimal RESP client, percentiles, load average,
starting and stopping processes by PID, and the Concord cluster launcher."""
import http.client, json, os, socket, subprocess, sys, tempfile, time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
CONCORD = os.environ.get("CONCORD", os.path.join(REPO, "target/release/concord"))
OUT = os.environ.get("OUT", os.path.join(BENCH_DIR, "results"))
os.makedirs(OUT, exist_ok=True)


def log(*a):
    print(time.strftime("[%H:%M:%S]"), *a, file=sys.stderr, flush=True)


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def wait_for_low_load(limit=1.5, max_wait=int(os.environ.get("LOAD_WAIT_S", "20"))):
    t0 = time.time()
    while float(loadavg().split()[0]) > limit and time.time() - t0 < max_wait:
        time.sleep(5)
    return loadavg()


def pct(xs, p):
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def summary(xs):
    return {"n": len(xs), "p50": pct(xs, 50), "p99": pct(xs, 99), "max": max(xs) if xs else float("nan"),
            "mean": sum(xs) / len(xs) if xs else float("nan")}


class Resp:
    """A blocking RESP2 client: enough for SET/GET/INCR and pipelines."""

    def __init__(self, port, host="127.0.0.1", timeout=30):
        self.s = socket.create_connection((host, port), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if not isinstance(a, bytes):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def send(self, data):
        self.s.sendall(data)

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            chunk = self.s.recv(262144)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.s.recv(262144)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest
        if t == b"-":
            return RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ValueError(line)

    def cmd(self, *args):
        self.send(self.encode(*args))
        r = self.read()
        if isinstance(r, RuntimeError):
            raise r
        return r

    def close(self):
        self.s.close()


def wait_port(port, timeout=30):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} did not open")


def wait_writable(port, timeout=60):
    wait_port(port, timeout)
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            c = Resp(port)
            if c.cmd("SET", "__bench_ready", "1") == b"OK":
                c.cmd("DEL", "__bench_ready")
                c.close()
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"port {port} not writable")


class Procs:
    """Processes started by a bench tool; stopped by PID (SIGTERM, then SIGKILL) on exit."""

    def __init__(self):
        self.procs = []

    def start(self, args, logfile, **kw):
        f = open(logfile, "ab")
        p = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, **kw)
        self.procs.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in list(reversed(self.procs)):
            self.stop(p)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop_all()


def start_concord(procs, base, regions, extra=(), tmp=None):
    """`concord up` on fresh data under a temp dir; waits until every region accepts writes."""
    d = tmp or tempfile.mkdtemp(prefix="concord-bench-")
    args = [CONCORD, "up", "--regions", ",".join(regions), "--data-dir", d, "--base-port", str(base), *extra]
    p = procs.start(args, os.path.join(d, "up.log") if os.path.isdir(d) else "/dev/null")
    for i in range(len(regions)):
        wait_writable(base + i)
    return p, d


def http_json(port, method, path, body=None, conn=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    c.request(method, path, body=data)
    r = c.getresponse()
    raw = r.read()
    if conn is None:
        c.close()
    try:
        return r.status, json.loads(raw)
    except Exception:
        return r.status, raw


def status(http_port):
    return http_json(http_port, "GET", "/v1/status")[1]
