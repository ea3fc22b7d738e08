#!/usr/bin/env python3
"""Independent-runtime cross-check of `align`.

What this proves
----------------
`align` verifies its own rewrites with tract. This script re-proves, with tools
that share no code with align (the `onnx` checker and onnxruntime), that for
each model:

1. `align MODEL -o aligned.onnx --json -q` exits 0;
2. the aligned file passes `onnx.checker.check_model(path, full_check=True)`;
3. onnxruntime (CPUExecutionProvider) gives the same outputs for the original
   and the aligned model on 3 seeded uniform [-1, 1) inputs, once with graph
   optimizations disabled and once with the default (ORT_ENABLE_ALL) level:
   every element must satisfy |a - b| <= 1e-4 + 1e-4 * |a| (a = original).
   For context (not asserted) the default-level row also shows how far
   onnxruntime's own optimizations move the original model's outputs;
4. graph inputs and outputs (names, shapes, element types, order) are unchanged;
5. `align report ALIGNED --json` shows no free (unpinned) channel dim that is
   not a multiple of --multiple;
6. the comparison has teeth:
   - negative control: adding 1.0 to the largest-magnitude weight of the first
     Conv (in node order) whose output reaches a graph output makes the same
     comparison FAIL;
   - the original model's outputs for two different random inputs differ by
     more than 1e-3 (max abs), so "equal outputs" is not trivially true.

   Two third-party fixtures (light_squeezenet, light_resnet50) have all weights
   equal to 0.02 (ConstantOfShape), so their Softmax output is exactly uniform
   and independent of both input and conv weights (see
   fixtures/third_party/README.md). For them only, the two teeth checks are
   reported as SKIP with that reason, and the script FAILS if such a model's
   output turns out to depend on its input after all (stale exemption).
   Everything else is checked for them as for any model.

How CI calls it
---------------
    python -m venv venv && venv/bin/pip install -r tests/python/requirements.txt
    cargo build
    venv/bin/python tests/python/crosscheck.py --align target/debug/align

With no MODEL arguments it checks every fixture: fixtures/*.onnx,
fixtures/dynamo_op18/model.onnx and fixtures/third_party/*.onnx, located
relative to this file. Exit status is non-zero if any check fails. The last
line printed is exactly `crosscheck: N passed, M failed` (N, M = models).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import Result, run_all_models  # noqa: E402
import symbolic  # noqa: E402

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"

ATOL = 1e-4
RTOL = 1e-4
TRIALS = 3
SEED = 24301
INPUT_DEPENDENCE_MIN = 1e-3  # original outputs for two inputs must differ by more
PERTURBATION = 1.0

# Fixtures whose output provably does not depend on input or conv weights, keyed
# by path relative to fixtures/. Only the two "teeth" checks are skipped for them.
INPUT_INDEPENDENT = {
    "third_party/light_squeezenet.onnx": "all weights are ConstantOfShape(0.02): Softmax output is uniform 1/1000",
    "third_party/light_resnet50.onnx": "all weights are ConstantOfShape(0.02): Softmax output is uniform 1/1000",
}

OPT_LEVELS = [
    ("opt=off", ort.GraphOptimizationLevel.ORT_DISABLE_ALL),
    ("opt=default", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
]


# --------------------------------------------------------------------------- helpers


# Models tract cannot run (opset-9 Upsample has no tract translation): align's
# own verification is skipped and onnxruntime is the only judge here.
NO_TRACT = {"realworld/opset9_resize.onnx"}
# Models tract verification refuses although the rewrite is correct: every
# weight is 0.02, so a folded BN's rounding is the same in every term of a
# sum and grows through 50 layers past the per-tensor noise bound (see
# docs/verify.md, "What it cannot see"). They are written with --no-verify
# (the certificate still runs) and cross-checked here in onnxruntime.
VERIFY_REFUSES = {"third_party/light_resnet50.onnx"}
# Models onnxruntime cannot run (a custom-domain op): not cross-checked here;
# tests/realworld.rs covers them.
NO_ORT = {"realworld/unknown_op.onnx"}


# Models with a dim align cannot analyse by design: it must say so.
EXPECTED_GAPS = {"subgraphs/if_reads_conv.onnx": "an If branch reads the conv (subgraphs are not analysed)"}


def default_models() -> list[Path]:
    models = sorted(FIXTURES.glob("*.onnx"))
    models.append(FIXTURES / "dynamo_op18" / "model.onnx")
    models += sorted((FIXTURES / "third_party").glob("*.onnx"))
    models += sorted(p for p in (FIXTURES / "realworld").glob("*.onnx") if display_name(p) not in NO_ORT)
    models += sorted((FIXTURES / "packages").glob("*.onnx")) + sorted((FIXTURES / "blocks").glob("*.onnx"))
    models += sorted((FIXTURES / "subgraphs").glob("*.onnx"))
    return models


def display_name(path: Path) -> str:
    try:
        return path.resolve().relative_to(FIXTURES).as_posix()
    except ValueError:
        return str(path)


def dims_of(value_info: onnx.ValueInfoProto):
    """(elem_type, shape) of a tensor ValueInfo; shape is None when unknown,
    each dim an int, a symbolic name, or '?'."""
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return t.elem_type, None
    shape = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            shape.append(d.dim_value)
        elif d.HasField("dim_param"):
            shape.append(d.dim_param)
        else:
            shape.append("?")
    return t.elem_type, tuple(shape)


def io_signature(model: onnx.ModelProto):
    def sig(values):
        out = []
        for v in values:
            elem, shape = dims_of(v)
            out.append((v.name, onnx.helper.tensor_dtype_to_string(elem) if elem else "?", shape))
        return out

    return {"inputs": sig(model.graph.input), "outputs": sig(model.graph.output)}


def feed_specs(model: onnx.ModelProto, name: str = ""):
    """(name, numpy dtype, concrete shape) of every graph input that is not an
    initializer (IR < 4 models list initializers as inputs too)."""
    inits = {i.name for i in model.graph.initializer}
    specs = []
    for v in model.graph.input:
        if v.name in inits:
            continue
        elem, shape = dims_of(v)
        if shape is None:
            raise ValueError(f"input '{v.name}' has no shape")
        concrete = symbolic.concrete(name, v.name, tuple(d if isinstance(d, int) and d > 0 else 1 for d in shape))
        specs.append((v.name, onnx.helper.tensor_dtype_to_np_dtype(elem), concrete))
    return specs


def make_feeds(specs, trial: int):
    rng = np.random.default_rng([SEED, trial])
    feeds = {}
    for name, dtype, shape in specs:
        if not np.issubdtype(dtype, np.floating):
            raise ValueError(f"input '{name}' has non-float type {dtype}; not supported")
        feeds[name] = rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
    return feeds


def session(model, level) -> ort.InferenceSession:
    """model: a path or serialized bytes."""
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    so.log_severity_level = 3  # opset < 7 warnings etc.
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def run_all(sess: ort.InferenceSession, feeds_per_trial):
    names = [o.name for o in sess.get_outputs()]
    return names, [dict(zip(names, sess.run(names, f))) for f in feeds_per_trial]


def within_noise(rows, noise) -> bool:
    """Every output deviates by at most twice onnxruntime's own self-noise."""
    return all(r["problem"] is None and r["max_abs"] <= 2 * n["max_abs"] for r, n in zip(rows, noise))


def compare(names, ref_runs, got_runs):
    """Per output: max abs err, max rel err, worst err/tol ratio, mismatch count.
    rel err = |a-b| / max(|a|, ATOL) (denominator floored so that values at
    ~0 do not produce meaningless huge ratios). Pass iff every element has
    |a-b| <= ATOL + RTOL*|a| (NaN only where the reference is NaN too)."""
    rows = []
    all_ok = True
    for name in names:
        max_abs = max_rel = max_ratio = 0.0
        mismatches = elements = 0
        problem = None
        for ref, got in zip(ref_runs, got_runs):
            a = np.asarray(ref[name], dtype=np.float64)
            if name not in got:
                problem = "missing in aligned"
                break
            b = np.asarray(got[name], dtype=np.float64)
            if a.shape != b.shape:
                problem = f"shape {a.shape} vs {b.shape}"
                break
            nan_a, nan_b = np.isnan(a), np.isnan(b)
            nan_bad = int(np.count_nonzero(nan_a != nan_b))
            fin = ~(nan_a | nan_b)
            err = np.abs(a - b)[fin]
            mag = np.abs(a)[fin]
            tol = ATOL + RTOL * mag
            elements += a.size
            mismatches += int(np.count_nonzero(~(err <= tol))) + nan_bad
            if err.size:
                max_abs = max(max_abs, float(err.max()))
                max_rel = max(max_rel, float((err / np.maximum(mag, ATOL)).max()))
                max_ratio = max(max_ratio, float((err / tol).max()))
        ok = problem is None and mismatches == 0
        all_ok &= ok
        rows.append(
            dict(name=name, ok=ok, problem=problem, max_abs=max_abs, max_rel=max_rel,
                 ratio=max_ratio, mismatches=mismatches, elements=elements)
        )
    return all_ok, rows


def fmt_rows(rows) -> str:
    parts = []
    for r in rows:
        if r["problem"]:
            parts.append(f"{r['name']}: {r['problem']}")
        else:
            parts.append(
                f"{r['name']}: max_abs={r['max_abs']:.3e} max_rel={r['max_rel']:.3e} "
                f"err/tol={r['ratio']:.3f} mismatches={r['mismatches']}/{r['elements']}"
            )
    return "; ".join(parts)


def reaches_output(graph: onnx.GraphProto, start_tensors) -> bool:
    consumers = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in graph.output}
    seen = set()
    todo = deque(start_tensors)
    while todo:
        t = todo.popleft()
        if t in outputs:
            return True
        if t in seen:
            continue
        seen.add(t)
        for n in consumers.get(t, []):
            todo.extend(x for x in n.output if x)
    return False


def perturb_first_conv(model: onnx.ModelProto):
    """Copy of model with PERTURBATION added to the largest-magnitude weight of
    the first Conv whose output reaches a graph output and whose weight is an
    initializer. Returns (model, description) or (None, reason)."""
    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        if not reaches_output(model.graph, node.output):
            continue
        w = numpy_helper.to_array(inits[node.input[1]]).copy()
        idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(np.abs(w))), w.shape))
        old = float(w[idx])
        w[idx] += PERTURBATION
        bad = onnx.ModelProto()
        bad.CopyFrom(model)
        for init in bad.graph.initializer:
            if init.name == node.input[1]:
                init.CopyFrom(numpy_helper.from_array(w, init.name))
        desc = f"Conv '{node.name}' weight '{node.input[1]}'{list(idx)}: {old:.4g} -> {old + PERTURBATION:.4g}"
        return bad, desc
    return None, "no Conv with an initializer weight reaches a graph output"


def run_align(align: str, args, timeout=600):
    return subprocess.run([align, *args], capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------- per model


def check_model(align: str, model_path: Path, multiple: int, align_args=()) -> Result:
    name = display_name(model_path)
    res = Result(name)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="crosscheck-") as tmp:
        aligned = Path(tmp) / "aligned.onnx"

        # 1. align
        extra = ["--no-verify"] if display_name(model_path) in NO_TRACT | VERIFY_REFUSES else []
        p = run_align(align, [str(model_path), "-o", str(aligned), "--json", "-q", "--multiple", str(multiple), *extra, *symbolic.ALIGN_ARGS.get(name, []), *align_args])
        detail = f"exit {p.returncode}"
        if p.returncode == 0:
            try:
                summary = json.loads(p.stdout)
                ver = summary.get("verification") or {}
                detail += (
                    f"; free unaligned dims {summary.get('unaligned_free_dims_before')} -> "
                    f"{summary.get('unaligned_free_dims_after')}; tract verification passed={ver.get('passed')}; "
                    f"output {aligned.stat().st_size / 1024:.1f} KiB"
                )
            except (json.JSONDecodeError, OSError) as e:
                detail += f"; bad --json output or no file: {e}"
                res.add("align exit 0", False, detail)
                res.seconds = time.monotonic() - t0
                return res
        else:
            detail += ": " + (p.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        if not res.add("align exit 0", p.returncode == 0, detail):
            res.seconds = time.monotonic() - t0
            return res

        # 2. onnx checker
        try:
            onnx.checker.check_model(str(aligned), full_check=True)
            res.add("onnx.checker full_check", True)
        except Exception as e:  # noqa: BLE001 - report any checker failure
            res.add("onnx.checker full_check", False, str(e).strip().splitlines()[0][:300])

        orig_model = onnx.load(str(model_path))  # loads external data too
        aligned_model = onnx.load(str(aligned))

        # 4. graph IO identical
        sig_o, sig_a = io_signature(orig_model), io_signature(aligned_model)
        diffs = []
        for kind in ("inputs", "outputs"):
            if sig_o[kind] != sig_a[kind]:
                only_o = [s for s in sig_o[kind] if s not in sig_a[kind]]
                only_a = [s for s in sig_a[kind] if s not in sig_o[kind]]
                diffs.append(f"{kind}: original-only {only_o[:3]} aligned-only {only_a[:3]}"
                             + ("" if only_o or only_a else " (order differs)"))
        res.add(
            "graph IO identical",
            not diffs,
            "; ".join(diffs) if diffs else
            f"{len(sig_o['inputs'])} inputs, {len(sig_o['outputs'])} outputs",
        )

        # 3. onnxruntime comparison at both optimization levels
        specs = feed_specs(orig_model, name)
        feeds = [make_feeds(specs, t) for t in range(TRIALS)]
        refs = {}  # label -> (output names, original outputs per trial)
        for label, level in OPT_LEVELS:
            try:
                refs[label] = run_all(session(str(model_path), level), feeds)
            except Exception as e:  # noqa: BLE001
                res.add(f"ort {label} runs the original", False, f"{type(e).__name__}: {str(e)[:300]}")
        # How much onnxruntime itself moves the ORIGINAL model's outputs when
        # only its kernels and fusions change (opt=off vs opt=all): fp32
        # reassociation in a deep network. Padding changes kernel blocking the
        # same way, so at either level a deviation no larger than twice that
        # self-noise is the runtime's, not align's; where the self-noise is 0
        # the elementwise tolerance alone decides.
        noise = None
        if len(refs) == len(OPT_LEVELS):
            names = refs[OPT_LEVELS[0][0]][0]
            _, noise = compare(names, refs[OPT_LEVELS[0][0]][1], refs[OPT_LEVELS[1][0]][1])
        for label, level in OPT_LEVELS:
            if label not in refs:
                continue
            try:
                names, ref = refs[label]
                _, got = run_all(session(str(aligned), level), feeds)
                ok, rows = compare(names, ref, got)
                detail = fmt_rows(rows)
                if noise is not None:
                    detail += " | ort self-noise, original opt=off vs opt=all: " + fmt_rows(noise)
                    if not ok:
                        ok = within_noise(rows, noise)
                        detail += " | within 2x self-noise" if ok else ""
                res.add(f"ort {label} orig==aligned", ok, detail)
            except Exception as e:  # noqa: BLE001
                res.add(f"ort {label} orig==aligned", False, f"{type(e).__name__}: {str(e)[:300]}")
        ref_off = refs.get(OPT_LEVELS[0][0])

        # 5. align report: no free unaligned dim
        p = run_align(align, ["report", str(aligned), "--json", "--multiple", str(multiple)])
        if p.returncode != 0:
            res.add("report: free dims aligned", False, f"align report exit {p.returncode}: {p.stderr.strip()[:300]}")
        else:
            rep = json.loads(p.stdout)
            bad, dims, untracked, gaps = [], 0, [], []
            for layer in rep.get("layers", []):
                for side in ("in", "out"):
                    d = layer.get(side)
                    if d is None:  # e.g. Gemm "out": no channel dim tracked
                        untracked.append(f"{layer['node']}({layer['op']}).{side}")
                        continue
                    if d.get("unanalysed"):
                        gaps.append(f"{layer['node']}.{side}: {'; '.join(d['unanalysed'])}")
                        continue
                    if d.get("pinned"):
                        continue
                    dims += 1
                    if d["channels"] % multiple:
                        bad.append(f"{layer['node']}.{side}={d['channels']}")
            res.add(
                "report: free dims aligned",
                not bad,
                f"{len(rep.get('layers', []))} layers, {dims} free dims"
                + (f", {len(untracked)} null (untracked): {', '.join(untracked[:5])}" if untracked else "")
                + (f"; unaligned: {', '.join(bad[:10])}" if bad else ""),
            )
            if name in EXPECTED_GAPS:
                res.add("report: the expected gap is reported", bool(gaps),
                        f"{EXPECTED_GAPS[name]}: {', '.join(gaps[:3]) or 'NOT reported'}")
            else:
                res.add("report: nothing unanalysed", not gaps,
                        f"{len(gaps)} unanalysed: {', '.join(gaps[:5])}" if gaps else "0 unanalysed")

        # 6. teeth: input dependence and negative control
        exempt = INPUT_INDEPENDENT.get(name)
        if ref_off is None:
            res.add("teeth: output depends on input", False, "no reference run")
        else:
            names, ref = ref_off
            diff = max(
                float(np.max(np.abs(np.asarray(ref[0][n], np.float64) - np.asarray(ref[1][n], np.float64)), initial=0.0))
                for n in names
            )
            depends = diff > INPUT_DEPENDENCE_MIN
            if exempt:
                if depends:
                    res.add("teeth: output depends on input", False,
                            f"listed as input-independent but trial 0 vs 1 max abs diff {diff:.3e}: remove the exemption")
                else:
                    res.skip("teeth: output depends on input", f"trial 0 vs 1 max abs diff {diff:.3e}; exempt: {exempt}")
            else:
                res.add("teeth: output depends on input", depends,
                        f"original, trial 0 vs 1: max abs diff {diff:.3e} (need > {INPUT_DEPENDENCE_MIN:g})")

            if exempt:
                res.skip("teeth: negative control fails", f"exempt: {exempt}")
            else:
                bad_model, desc = perturb_first_conv(aligned_model)
                if bad_model is None:
                    res.add("teeth: negative control fails", False, desc)
                else:
                    _, got = run_all(session(bad_model.SerializeToString(), OPT_LEVELS[0][1]), feeds)
                    ok, rows = compare(names, ref, got)
                    ok = ok or (noise is not None and within_noise(rows, noise))  # the same rule as above
                    worst = max(r["max_abs"] for r in rows)
                    res.add("teeth: negative control fails", not ok,
                            f"{desc}; comparison {'PASSED (no teeth!)' if ok else 'failed as required'}; "
                            f"max_abs={worst:.3e}")
    res.seconds = time.monotonic() - t0
    return res


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--align", required=True, help="path to the align binary")
    ap.add_argument("--multiple", type=int, default=8)
    ap.add_argument("--align-arg", action="append", default=[], help="extra argument for align (repeatable), e.g. --slice-pinned")
    ap.add_argument("models", nargs="*", type=Path, help="default: every fixture")
    args = ap.parse_args(argv)

    align = str(Path(args.align).resolve())
    models = args.models or default_models()
    print(f"crosscheck: align={align} multiple={args.multiple} onnx={onnx.__version__} "
          f"onnxruntime={ort.__version__} numpy={np.__version__} trials={TRIALS} seed={SEED} "
          f"tol=|a-b|<={ATOL:g}+{RTOL:g}*|a|")
    print()
    return run_all_models("crosscheck", models, lambda m: check_model(align, m, args.multiple, args.align_arg), display_name)


if __name__ == "__main__":
    sys.exit(main())
