#!/usr/bin/env python3
"""PNG plots from bench/results: write-latency CDFs, replication lag over time, convergence.
Needs matplotlib (pip install matplotlib)."""
import csv, glob, os, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

OUT = os.environ.get("OUT", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
DOCS = os.environ.get("PLOTS", os.path.join(os.path.dirname(os.path.abspath(__file__)), "plots"))
os.makedirs(DOCS, exist_ok=True)


def cdf(ax, xs, label):
    xs = sorted(xs)
    n = len(xs)
    ax.plot(xs, [(i + 1) / n for i in range(n)], label=label, drawstyle="steps-post")


def latency():
    files = sorted(glob.glob(os.path.join(OUT, "latency_*.txt")))
    if not files:
        return
    fig, ax = plt.subplots(figsize=(9, 5))
    for f in files:
        name = os.path.basename(f)[len("latency_"):-4]
        xs = [float(l) for l in open(f) if l.strip()]
        cdf(ax, xs, f"{name} (n={len(xs)})")
    ax.set_xscale("log")
    ax.set_xlabel("write latency seen by the client (ms, log scale)")
    ax.set_ylabel("fraction of writes")
    ax.set_title("Geo write latency, 3 regions, 30 ms one-way delay")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(os.path.join(DOCS, "latency_cdf.png"), dpi=110)


def lag():
    files = sorted(glob.glob(os.path.join(OUT, "lag_*ms_*.csv")))
    if not files:
        return
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for f in files:
        base = os.path.basename(f)[4:-4]  # e.g. 0ms_10000
        delay, rate = base.split("_", 1)
        rows = list(csv.DictReader(open(f)))
        t = [float(r["t_s"]) for r in rows]
        l = [float(r["lag_ms"]) for r in rows]
        axes[0].plot(t, l, ".", markersize=1, label=f"{delay} delay, {rate} w/s")
        cdf(axes[1], l, f"{delay} delay, {rate} w/s")
    axes[0].set_xlabel("time since the writer started (s)")
    axes[0].set_ylabel("lag: ack in us -> visible in eu (ms)")
    axes[0].set_yscale("log")
    axes[0].set_title("Replication lag over time")
    axes[0].legend(fontsize=7, markerscale=8)
    axes[1].set_xscale("log")
    axes[1].set_xlabel("lag (ms, log scale)")
    axes[1].set_ylabel("fraction of writes")
    axes[1].set_title("Replication lag CDF")
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(DOCS, "lag.png"), dpi=110)


def convergence():
    f = os.path.join(OUT, "convergence_series.csv")
    if not os.path.exists(f):
        return
    rows = list(csv.DictReader(open(f)))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([float(r["t_s"]) for r in rows], [int(r["ops_missing"]) for r in rows], marker=".")
    ax.set_xlabel("time since heal (s)")
    ax.set_ylabel("ops missing, summed over regions")
    ax.set_title("Catch-up after a partition")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(DOCS, "convergence.png"), dpi=110)


if __name__ == "__main__":
    latency()
    lag()
    convergence()
    print("plots in", DOCS)
