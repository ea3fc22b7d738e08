#!/usr/bin/env python3
"""onnxruntime CPU latency of aligned vs original models for several `--max-growth` thresholds: the data
behind align's default (a channel dim that padding would widen more than FACTOR keeps its width, and so do
both dims of a grouped conv whose MACs padding its groups would grow more than FACTOR).

    python bench/growth.py [MODEL ...] [--thresholds 1.5 2 3 4 inf] [--out FILE] [--max-mb 100]

Models (no arguments): every .onnx under fixtures/packages, fixtures/realworld and fixtures/ (top level)
that onnxruntime can run, plus every /work/models/*.onnx when that folder exists; files above --max-mb are
skipped with a note. Per model and threshold: `align MODEL -o OUT --no-verify -q --max-growth T`; then the
original and every distinct aligned file run round-robin in one loop (rotating order) in onnxruntime
(CPUExecutionProvider, intra_op_num_threads=1, ORT_ENABLE_ALL, random [0,1) input; symbolic dims 1, symbolic
H/W 640 for ultralytics exports else 224), at least --min-runs rounds and --min-seconds per variant;
ratio = median(aligned) / median(original), times being the process CPU time of each run (the 1-thread
session computes in the calling thread, so this is the latency on a quiet machine and not inflated when
other jobs preempt it; the wall-clock ratio and the median of per-round paired ratios go to --json);
"no pad" = `align --passes fold-bn,deconv` measured alongside, i.e. what BatchNorm folding alone does, so the
padding's own effect is ratio / no-pad. CPU used by other processes while measuring is recorded per model;
--quiet-timeout S waits up to S seconds before each model for them to drop under --quiet-cores.
`align report --json --max-growth T` on the original gives the
cost-pinned entries (pinned layer sides whose reasons start with "cost:") and the free dims padded
(totals.free_unaligned, of totals.alignable). Needs onnx, onnxruntime, numpy; align at target/debug or --align.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
SLOWER = 1.05


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _cpu_busy() -> float:
    """Seconds of busy CPU (all cores) since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """CPU (in cores) used by everything except this process between start() and stop()."""

    def start(self) -> None:
        self.t, self.busy, self.own = time.monotonic(), _cpu_busy(), time.process_time()

    def stop(self) -> float:
        dt = time.monotonic() - self.t
        return max(0.0, (_cpu_busy() - self.busy) - (time.process_time() - self.own)) / max(dt, 1e-6)


def wait_quiet(limit: float, timeout: float) -> float:
    """Wait (up to timeout s) until other processes use under `limit` cores over 2 s; returns that use."""
    ol, t0 = OtherLoad(), time.monotonic()
    while True:
        ol.start()
        time.sleep(2.0)
        used = ol.stop()
        if used < limit or time.monotonic() - t0 > timeout:
            return used


def default_models() -> list[str]:
    pats = [ROOT / "fixtures/packages/*.onnx", ROOT / "fixtures/realworld/*.onnx", ROOT / "fixtures/*.onnx"]
    if Path("/work/models").is_dir():
        pats.append(Path("/work/models/*.onnx"))
    out = []
    for p in pats:
        out += sorted(f for f in glob.glob(str(p)) if not f.endswith(".aligned.onnx"))
    return out


def is_ultralytics(path: str, m: onnx.ModelProto) -> bool:
    meta = {p.key: p.value for p in m.metadata_props}
    return "ultralytics" in meta.get("author", "").lower() or "ultralytics" in Path(path).name.lower()


def input_shapes(path: str) -> dict[str, tuple[list[int], str]]:
    """name -> (concrete shape, onnx elem type name) of each graph input that is not an initializer."""
    m = onnx.load(path, load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    hw = 640 if is_ultralytics(path, m) else 224
    res = {}
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dims = []
        for i, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(d.dim_value)
            else:  # symbolic: H / W of a 4-D image input, else 1
                dims.append(hw if len(tt.shape.dim) == 4 and i >= 2 else 1)
        res[vi.name] = (dims, onnx.TensorProto.DataType.Name(tt.elem_type))
    return res


def feeds_for(sess: ort.InferenceSession, shapes: dict, rng: np.random.Generator) -> dict:
    types = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}
    feeds = {}
    for i in sess.get_inputs():
        dims = shapes[i.name][0]
        if i.type in types:
            feeds[i.name] = rng.random(dims, dtype=np.float64).astype(types[i.type])
        else:
            feeds[i.name] = np.zeros(dims, dtype=np.int64 if "int64" in i.type else np.int32)
    return feeds


def session(path: str) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def run_align(cmd: list[str]) -> subprocess.CompletedProcess:
    """Run align, waiting (up to 5 min) while the binary is missing (being rebuilt)."""
    for _ in range(150):
        if os.path.exists(cmd[0]):
            try:
                return subprocess.run(cmd, capture_output=True, text=True)
            except OSError:  # replaced under our feet
                pass
        time.sleep(2)
    return subprocess.run(cmd, capture_output=True, text=True)


def report(align: str, model: str, t: str, extra: list[str]) -> dict:
    r = run_align([align, "report", model, "--json", "--max-growth", t] + extra)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}")
    d = json.loads(r.stdout)
    cost = sum(1 for p in d["pinned"] if any(s.startswith("cost:") for s in p["reasons"]))
    tot = d["totals"]
    return dict(cost=cost, padded=tot["free_unaligned"], alignable=tot["alignable"],
                macs=tot["macs"], macs_aligned=tot["macs_aligned"])


def measure(paths: list[str], shapes: dict, min_runs: int, min_seconds: float,
            max_runs: int) -> tuple[list[float], list[float], list[float], int]:
    """Median latency (s) of each path, run round-robin with a rotating order, as process CPU time (a 1-thread
    sequential session runs in the calling thread, so this is its latency minus the time other processes
    preempt it: robust on a shared machine); the median over rounds of each path's time / the first path's
    time in the same round; and the wall-clock ratio of medians to the first path."""
    sess = [session(p) for p in paths]
    rng = np.random.default_rng(0)
    feeds = [feeds_for(s, shapes, rng) for s in sess]
    feeds = [feeds[0]] * len(sess)  # the same input for every variant (all take the original's inputs)
    for s, f in zip(sess, feeds):  # warm-up
        for _ in range(2):
            s.run(None, f)
    one = []
    for _ in range(3):
        t0 = time.perf_counter()
        sess[0].run(None, feeds[0])
        one.append(time.perf_counter() - t0)
    one = max(statistics.median(one), 1e-5)
    rounds = int(min(max_runs, max(min_runs, math.ceil(min_seconds / one))))
    times: list[list[float]] = [[] for _ in sess]  # process CPU time per run
    walls: list[list[float]] = [[] for _ in sess]  # wall time per run
    n = len(sess)
    for r in range(rounds):
        for k in range(n):
            i = (k + r) % n
            t0, c0 = time.perf_counter(), time.process_time()
            sess[i].run(None, feeds[i])
            c1, t1 = time.process_time(), time.perf_counter()
            times[i].append(c1 - c0)
            walls[i].append(t1 - t0)
    paired = [statistics.median(t / o for t, o in zip(ti, times[0])) for ti in times]
    wall = [statistics.median(w) / statistics.median(walls[0]) for w in walls]
    return [statistics.median(t) for t in times], paired, wall, rounds


def fmt_ratio(x: float | None) -> str:
    if x is None:
        return "–"
    s = f"{x:.2f}"
    return f"**{s}**" if x > SLOWER else s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*")
    ap.add_argument("--thresholds", nargs="+", default=["1.5", "2", "3", "4", "inf"])
    ap.add_argument("--align", default=str(ROOT / "target/debug/align"))
    ap.add_argument("--out", help="also write the markdown here")
    ap.add_argument("--max-mb", type=float, default=100.0, help="skip models larger than this (MB)")
    ap.add_argument("--min-runs", type=int, default=15)
    ap.add_argument("--min-seconds", type=float, default=1.5, help="per variant and model")
    ap.add_argument("--max-runs", type=int, default=5000)
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--quiet-cores", type=float, default=0.3,
                    help="before each model wait until other processes use fewer cores than this")
    ap.add_argument("--quiet-timeout", type=float, default=0.0, help="... for at most this many seconds (0: no wait)")
    a = ap.parse_args()

    models = a.models or default_models()
    ths = a.thresholds
    notes: list[str] = []
    rows = []
    start_load = loadavg()
    print(f"load average at start: {start_load}; {len(models)} models; thresholds {' '.join(ths)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="growth-") as td:
        # a private copy of the binary: one align for the whole run even if target/debug/align is rebuilt meanwhile
        for _ in range(150):
            if os.path.exists(a.align):
                break
            time.sleep(2)
        align_bin = os.path.join(td, "align")
        shutil.copy2(a.align, align_bin)
        digest = hashlib.sha256(Path(align_bin).read_bytes()).hexdigest()[:12]
        binary = f"{a.align} (mtime {time.ctime(os.path.getmtime(align_bin))}, sha256 {digest}, copied at start)"
        print(f"align: {binary}", flush=True)
        a.align = align_bin
        for mi, model in enumerate(models):
            name = Path(model).name
            mb = os.path.getsize(model) / 1e6
            if mb > a.max_mb:
                notes.append(f"`{name}`: skipped, {mb:.0f} MB > --max-mb {a.max_mb:g}")
                print(f"[{mi + 1}/{len(models)}] {name}: skipped ({mb:.0f} MB)", flush=True)
                continue
            try:
                shapes = input_shapes(model)
                s = session(model)
                s.run(None, feeds_for(s, shapes, np.random.default_rng(0)))
                del s
            except Exception as e:  # noqa: BLE001
                notes.append(f"`{name}`: onnxruntime cannot run it ({str(e).splitlines()[0][:120]})")
                print(f"[{mi + 1}/{len(models)}] {name}: onnxruntime cannot run it", flush=True)
                continue
            # shapes for align only when the input has symbolic dims
            extra = []
            m = onnx.load(model, load_external_data=False)
            for vi in m.graph.input:
                if vi.name in shapes and any(not (d.HasField("dim_value") and d.dim_value > 0)
                                             for d in vi.type.tensor_type.shape.dim):
                    extra += ["--input-shape", f"{vi.name}={'x'.join(map(str, shapes[vi.name][0]))}"]
            del m
            per_t, variants, digest_of = {}, [], {}
            # "nopad": align --passes fold-bn,deconv (what alignment gains or costs besides the padding)
            for t in ["nopad"] + ths:
                out = os.path.join(td, f"{mi}_{t}.onnx")
                how = ["--passes", "fold-bn,deconv"] if t == "nopad" else ["--max-growth", t]
                r = run_align([a.align, model, "-o", out, "--no-verify", "-q"] + how + extra)
                if r.returncode != 0 or not os.path.exists(out):
                    msg = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1][:160]
                    per_t[t] = dict(error=msg)
                    continue
                try:
                    info = report(a.align, model, t, extra) if t != "nopad" else {}
                except Exception as e:  # noqa: BLE001
                    info = dict(cost=None, padded=None, alignable=None, error_report=str(e))
                h = hashlib.sha256(Path(out).read_bytes()).hexdigest()
                if h not in digest_of:
                    digest_of[h] = len(variants)
                    variants.append(out)
                info["variant"] = digest_of[h]
                per_t[t] = info
            errs = {t: v["error"] for t, v in per_t.items() if "error" in v}
            if errs:
                notes.append(f"`{name}`: align failed at " + ", ".join(f"{t} ({e})" for t, e in errs.items()))
            if not variants:
                print(f"[{mi + 1}/{len(models)}] {name}: align failed", flush=True)
                continue
            if a.quiet_timeout > 0:
                wait_quiet(a.quiet_cores, a.quiet_timeout)
            load0 = loadavg()
            ol = OtherLoad()
            ol.start()
            try:
                med, paired, wall, rounds = measure([model] + variants, shapes, a.min_runs, a.min_seconds, a.max_runs)
            except Exception as e:  # noqa: BLE001
                notes.append(f"`{name}`: an aligned model does not run ({str(e).splitlines()[0][:120]})")
                print(f"[{mi + 1}/{len(models)}] {name}: aligned model does not run: {e}", flush=True)
                continue
            other = ol.stop()
            for t, v in per_t.items():
                if "variant" in v:
                    v["ratio"] = med[1 + v["variant"]] / med[0]
                    v["paired"] = paired[1 + v["variant"]]
                    v["wall"] = wall[1 + v["variant"]]
            for p in variants:
                os.remove(p)
            row = dict(model=name, path=model, mb=mb, orig_ms=med[0] * 1e3, rounds=rounds, variants=len(variants),
                       load=f"{load0} → {loadavg()}", other_cores=other, per_t=per_t)
            rows.append(row)
            print(f"[{mi + 1}/{len(models)}] {name}: {med[0] * 1e3:.2f} ms, {rounds} rounds x {1 + len(variants)}, "
                  + " ".join(f"{t}:{fmt_ratio(v.get('ratio'))}" for t, v in per_t.items())
                  + f"  (other processes {other:.2f} cores)", flush=True)
    end_load = loadavg()

    L = []
    L.append(f"onnxruntime {ort.__version__} CPU, 1 thread, ORT_ENABLE_ALL; ratio = median aligned / median original "
             f"latency (process CPU time per run, interleaved); **bold** = slower than {SLOWER}×. cost = pinned layer sides with a `cost:` "
             f"reason; padded = free dims align pads (of alignable); no pad = `--passes fold-bn,deconv` (BatchNorm folding "
             f"alone); other load = cores used by other processes while measuring. Load average: {start_load} at start, "
             f"{end_load} at end. align: {binary}.\n")
    L.append("| model | orig ms | no pad | " + " | ".join(f"×{t}" for t in ths) + " | cost pins (" + "/".join(ths)
             + ") | padded dims (" + "/".join(ths) + ") | other load |")
    L.append("|---|---:|---:|" + "---:|" * len(ths) + "---|---|---:|")
    for r in rows:
        pt = r["per_t"]
        ratios = " | ".join(fmt_ratio(pt[t].get("ratio")) for t in ths)
        cost = "/".join(str(pt[t].get("cost", "–")) for t in ths)
        padded = "/".join(str(pt[t].get("padded", "–")) for t in ths)
        alignable = pt[ths[-1]].get("alignable", "–")
        nopad = fmt_ratio(pt.get("nopad", {}).get("ratio"))
        L.append(f"| `{r['model']}` | {r['orig_ms']:.2f} | {nopad} | {ratios} | {cost} | {padded} (of {alignable}) "
                 f"| {r['other_cores']:.2f} |")
    L.append("")
    L.append(f"| --max-growth | models | median ratio | worst ratio (model) | slower than {SLOWER}× | "
             "cost pins, total | padded dims, total |")
    L.append("|---|---:|---:|---|---:|---:|---:|")
    summary = {}
    for t in ths:
        vals = [(r["per_t"][t]["ratio"], r["model"]) for r in rows if "ratio" in r["per_t"].get(t, {})]
        if not vals:
            continue
        worst = max(vals)
        slow = sorted(m for v, m in vals if v > SLOWER)
        cost = sum(r["per_t"][t].get("cost") or 0 for r in rows if t in r["per_t"])
        padded = sum(r["per_t"][t].get("padded") or 0 for r in rows if t in r["per_t"])
        summary[t] = dict(median=statistics.median(v for v, _ in vals), worst=worst, slow=slow)
        L.append(f"| {t} | {len(vals)} | {statistics.median(v for v, _ in vals):.3f} | {worst[0]:.2f} "
                 f"(`{worst[1]}`) | {len(slow)} | {cost} | {padded} |")
    L.append("")
    for t in ths:
        if t in summary and summary[t]["slow"]:
            L.append(f"- slower than {SLOWER}× at {t}: " + ", ".join(f"`{m}`" for m in summary[t]["slow"]))
    for n in notes:
        L.append(f"- {n}")
    md = "\n".join(L) + "\n"
    print("\n" + md)
    if a.out:
        Path(a.out).write_text(md)
    if a.json:
        Path(a.json).write_text(json.dumps(dict(rows=rows, notes=notes, load=[start_load, end_load]), indent=1))


if __name__ == "__main__":
    main()
