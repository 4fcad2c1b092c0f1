#!/usr/bin/env python3
"""Print the throughput table (ops/s and Concord / Redis ratio) from bench/results/throughput.csv."""
import csv, sys, collections

rows = list(csv.DictReader(open(sys.argv[1] if len(sys.argv) > 1 else "bench/results/throughput.csv")))
by = collections.OrderedDict()
for r in rows:
    by[(r["target"], r["pipeline"], r["test"].split()[0])] = r
targets = list(dict.fromkeys(r["target"] for r in rows))
tests = list(dict.fromkeys(r["test"].split()[0] for r in rows))
for p in dict.fromkeys(r["pipeline"] for r in rows):
    print(f"\n-P {p}: ops/s (ratio to redis-server everysec); load 1/5/15 at start of that run")
    print("| command | " + " | ".join(targets) + " |")
    print("|---|" + "---|" * len(targets))
    for t in tests:
        base = by.get(("redis", p, t))
        cells = []
        for tg in targets:
            r = by.get((tg, p, t))
            if not r:
                cells.append("-")
                continue
            rps = float(r["rps"])
            c = f"{rps:,.0f}"
            if base and tg != "redis":
                c += f" ({rps / float(base['rps']):.2f}×)"
            cells.append(c)
        n = next((r["requests"] for r in rows if r["test"].split()[0] == t), "?")
        print(f"| {t} (-n {n}) | " + " | ".join(cells) + " |")
    loads = []
    for tg in targets:
        r = by.get((tg, p, tests[0]))
        if r:
            loads.append(f"{tg}: {r['load1']}/{r['load5']}/{r['load15']}")
    print("load: " + "; ".join(loads))
