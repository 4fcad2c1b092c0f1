#!/usr/bin/env python3
"""Where a function's time goes: fold `perf script` output (from a `--call-graph dwarf` profile)
by the callees of the outermost frame matching TARGET.

    perf script -i perf.data > stacks.txt
    python3 bench/callers.py stacks.txt "Node::commit_pending" [DEPTH]

Prints the share of all samples that have TARGET on their stack, then the callees at DEPTH
(default 1) below it, as a share of all samples.
"""
import sys, re, collections
if len(sys.argv) < 3:
    sys.exit(__doc__)
target = sys.argv[2]; depth = int(sys.argv[3]) if len(sys.argv) > 3 else 1
samples = []; cur = []
for line in open(sys.argv[1], errors='replace'):
    line = line.rstrip('\n')
    if not line.strip():
        if cur: samples.append(cur); cur = []
        continue
    if line.startswith(('\t', ' ')):
        m = re.match(r'\s+[0-9a-f]+ (.*) \(', line)
        if m: cur.append(re.sub(r'\+0x[0-9a-f]+$', '', m.group(1)))
if cur: samples.append(cur)
tot = len(samples); cnt = collections.Counter(); hit = 0
for s in samples:  # s[0] = leaf
    idx = [i for i, f in enumerate(s) if target in f]
    if not idx: continue
    hit += 1
    i = idx[-1]  # outermost occurrence
    child = s[i - depth] if i - depth >= 0 else '<self>'
    cnt[child[:150]] += 1
print(f"{target}: {hit}/{tot} samples = {100*hit/tot:.1f}%")
for k, v in cnt.most_common(25): print(f"{100*v/tot:6.1f}%  {k}")
