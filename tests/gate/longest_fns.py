#!/usr/bin/env python3
"""Longest functions (lines from `fn` to its closing brace) in the given .rs files or folders:
issue 17 asks for none above 100 lines in ir/, analysis/ and ops/.

    tests/gate/longest_fns.py src/ir src/ops [-n 5]
"""
import re, sys, pathlib

def functions(path):
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r'\s*(pub(\([a-z]+\))?\s+)?(const\s+)?fn\s+(\w+)', line)
        if not m:
            continue
        depth, opened = 0, False
        for j in range(i, len(lines)):
            code = re.sub(r'"(\\.|[^"\\])*"|\'(\\.|[^\'\\])\'|//.*', '', lines[j])
            depth += code.count('{') - code.count('}')
            opened = opened or '{' in code
            if opened and depth <= 0:
                yield j - i + 1, f"{path}:{i + 1} {m.group(4)}"
                break
            if not opened and code.rstrip().endswith(';'):
                break

args = sys.argv[1:]
top = 5
if '-n' in args:
    k = args.index('-n'); top = int(args[k + 1]); del args[k:k + 2]
found = []
for a in args:
    p = pathlib.Path(a)
    for f in ([p] if p.is_file() else sorted(p.rglob('*.rs'))):
        found.extend(functions(f))
for n, where in sorted(found, reverse=True)[:top]:
    print(f"{n:5d} {where}")
