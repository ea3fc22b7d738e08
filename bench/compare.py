#!/usr/bin/env python3
"""Two align binaries head to head on one model: whole-process wall time and
peak RSS of `--no-verify` and verified runs, interleaved round-robin, plus
the peak heap (valgrind massif) of one `--no-verify` run each. Also checks
that both write byte-identical output files.

    python bench/compare.py BASE_BINARY OTHER_BINARY [--model M] [--reps 10]

Used for the "fewer copies" experiment in docs/benchmarks.md
(bench/experiments/fewer-copies.diff).
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, GEN640, fmt_ms, loadavg, med, timed  # noqa: E402


def massif_peak(binary: str, model: str, out: Path) -> int | None:
    if not shutil.which("valgrind"):
        return None
    f = out / "massif.out"
    subprocess.run(["valgrind", "--tool=massif", f"--massif-out-file={f}", binary, model, "--no-verify",
                    "-o", str(out / "m.onnx"), "-q"], capture_output=True, check=True)
    heaps = [int(a) + int(b) for a, b in re.findall(r"mem_heap_B=(\d+)\nmem_heap_extra_B=(\d+)", f.read_text())]
    return max(heaps)


def main() -> None:
    ap = argparse.ArgumentParser(description="compare two align binaries")
    ap.add_argument("base")
    ap.add_argument("other")
    ap.add_argument("--model", default=str(GEN640))
    ap.add_argument("--reps", type=int, default=10)
    a = ap.parse_args()
    size = Path(a.model).stat().st_size
    bins = {"base": a.base, "other": a.other}
    jobs = {"--no-verify": ["--no-verify"], "verified": []}
    res = {(b, j): {"wall": [], "rss": []} for b in bins for j in jobs}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        keys = list(res)
        for r in range(a.reps):
            for b, j in keys[r % len(keys):] + keys[:r % len(keys)]:
                wall, rss, _ = timed([bins[b], a.model, "-o", str(tmp / f"{b}.onnx"), "-q"] + jobs[j], ROOT)
                res[(b, j)]["wall"].append(wall)
                res[(b, j)]["rss"].append(rss * 1024)
            print(f"  repetition {r + 1}/{a.reps}, load {loadavg()}", flush=True)
        same = filecmp.cmp(tmp / "base.onnx", tmp / "other.onnx", shallow=False)
        peaks = {b: massif_peak(bins[b], a.model, tmp) for b in bins}
    print(f"\n{a.model} ({size / 1e6:.2f} MB), {a.reps} interleaved runs; outputs byte-identical: {same}\n")
    print("| binary | run | wall ms, median (min–max) | peak RSS MB (× file) | massif peak heap MB (× file), --no-verify |")
    print("|---|---|---:|---:|---:|")
    for (b, j), v in res.items():
        w, rss = v["wall"], med(v["rss"])
        pk = peaks[b]
        pks = f"{pk / 1e6:.1f} ({pk / size:.1f}×)" if pk and j == "--no-verify" else ""
        print(f"| {b}: `{bins[b]}` | {j} | {fmt_ms(med(w))} ({fmt_ms(min(w))}–{fmt_ms(max(w))}) | "
              f"{rss / 1e6:.1f} ({rss / size:.1f}×) | {pks} |")


if __name__ == "__main__":
    main()
