#!/usr/bin/env python3
"""int8 quantization error of align's output against the original's (issue 18, item 11: "quantization is a
cost too"). Padding must not make a model quantize worse.

    python bench/int8_error.py [MODEL ...] [--quantizer ort|rknn] [--out FILE.json] [--calib N] [--test N]
                               [--align-arg=--passes=fold-bn,deconv]   # BN folding alone, no padding

Models (no arguments): every single-input float32 .onnx under fixtures/packages and fixtures/realworld with a
4-D image input (float16 exports are left out: they are not what a quantizer starts from). Per model:
`align MODEL -o OUT -q` (the default command), then both models are quantized with the same calibration set
and run on the same test images; the error of each int8 model is the mean |int8 - fp32| over every output
element, the fp32 reference being the ORIGINAL model under onnxruntime; ratio = aligned error / original error.

Quantizers:
* ort (any venv with onnxruntime): `onnxruntime.quantization.quantize_static`, QDQ, per-channel, QInt8
  activations and weights, MinMax calibration.
* rknn (a venv with rknn-toolkit2, e.g. 2.5.0 for Python 3.11): rk3588, w8a8, per-channel ('channel'),
  'normal' algorithm, optimization_level 3, on its CPU simulator; inputs uint8 NCHW with mean 0, std 255 (so
  the model sees the same [0, 1] images as under ort). rknn-toolkit2 imports torch even to convert ONNX.
  Models it cannot convert are reported as such.

Images: smooth noise (a few octaves of bilinearly upsampled Gaussian noise), uint8, seeded; --calib for
calibration (default 32), --test for the evaluation (default 16), another seed. Symbolic input dims: batch 1,
H and W from the model's `imgsz` metadata (ultralytics) or 64.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[1]
ort.set_default_logger_severity(3)


def smooth_images(n: int, shape: tuple, seed: int) -> np.ndarray:
    """n uint8 images [n, C, H, W] of smooth noise."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    out = np.zeros((n, c, h, w), np.float32)
    for cells, weight in ((4, 1.0), (max(h // 16, 2), 0.6), (max(h // 4, 2), 0.35), (h, 0.2)):
        noise = rng.standard_normal((n, c, cells, cells)).astype(np.float32)
        ys = np.linspace(0, cells - 1, h)
        xs = np.linspace(0, cells - 1, w)
        y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
        y1, x1 = np.minimum(y0 + 1, cells - 1), np.minimum(x0 + 1, cells - 1)
        fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
        a = noise[:, :, y0][:, :, :, x0] * (1 - fy) * (1 - fx) + noise[:, :, y1][:, :, :, x0] * fy * (1 - fx)
        b = noise[:, :, y0][:, :, :, x1] * (1 - fy) * fx + noise[:, :, y1][:, :, :, x1] * fy * fx
        out += weight * (a + b)
    out = (out - out.mean()) / (out.std() + 1e-6)
    return np.clip(127.5 + 55 * out, 0, 255).astype(np.uint8)


def input_shape(m: onnx.ModelProto) -> tuple | None:
    """[C, H, W] of the single float32 4-D image input, symbolic H, W from `imgsz` or 64."""
    inits = {t.name for t in m.graph.initializer}
    ins = [i for i in m.graph.input if i.name not in inits]
    if len(ins) != 1 or ins[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        return None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in ins[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[1] is None:
        return None
    meta = {p.key: p.value for p in m.metadata_props}
    size = 64
    if "imgsz" in meta:
        size = int("".join(ch if ch.isdigit() else " " for ch in meta["imgsz"]).split()[0])
    return (dims[1], dims[2] or size, dims[3] or size)


def run_fp32(path: str, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return np.stack([np.concatenate([o.ravel() for o in s.run(None, {name: xi[None]})]) for xi in x])


def quant_ort(path: str, out: str, calib: np.ndarray) -> callable:
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    name = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{name: c[None]} for c in calib])

        def get_next(self):
            return next(self.it, None)

    quantize_static(path, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    return lambda x: run_fp32(out, x)


def quant_rknn(path: str, out: str, calib_u8: np.ndarray, tmp: str) -> callable:
    from rknn.api import RKNN

    files = []
    for i, c in enumerate(calib_u8):
        f = os.path.join(tmp, f"calib{i}.npy")
        np.save(f, c)  # rknn wants .npy dataset entries as CHW
        files.append(f)
    ds = os.path.join(tmp, "dataset.txt")
    Path(ds).write_text("\n".join(files) + "\n")
    r = RKNN(verbose=False)
    r.config(mean_values=[[0.0] * calib_u8.shape[1]], std_values=[[255.0] * calib_u8.shape[1]],
             target_platform="rk3588", quantized_dtype="w8a8", quantized_algorithm="normal",
             quantized_method="channel", optimization_level=3)
    name = onnx.load(path, load_external_data=False).graph.input[0].name
    size = [[1, *calib_u8.shape[1:]]]  # symbolic dims made concrete, as the other quantizer sees them
    if (r.load_onnx(model=path, inputs=[name], input_size_list=size) != 0
            or r.build(do_quantization=True, dataset=ds) != 0 or r.init_runtime() != 0):
        raise RuntimeError("rknn-toolkit2 could not convert the model")

    def run(x_u8: np.ndarray) -> np.ndarray:
        rows = []
        for xi in x_u8:
            outs = r.inference(inputs=[xi[None]], data_format="nchw")
            rows.append(np.concatenate([np.asarray(o, np.float32).ravel() for o in outs]))
        return np.stack(rows)

    return run


def default_models() -> list[Path]:
    found = []
    for d in ("fixtures/packages", "fixtures/realworld"):
        for f in sorted(glob.glob(str(REPO / d / "**/*.onnx"), recursive=True)):
            if "fp16" in f or f.endswith(".aligned.onnx"):
                continue
            found.append(Path(f))
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", type=Path)
    ap.add_argument("--align", default=str(REPO / "target" / "debug" / "align"))
    ap.add_argument("--quantizer", choices=("ort", "rknn"), default="ort")
    ap.add_argument("--calib", type=int, default=32)
    ap.add_argument("--test", type=int, default=16)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--align-arg", action="append", default=[],
                    help="extra align argument (repeatable), e.g. --align-arg=--passes=fold-bn,deconv for BN folding alone")
    a = ap.parse_args()
    rows = []
    print(f"{'model':48s} {'orig err':>10s} {'aligned err':>11s} {'ratio':>6s}  per-image ratio  (quantizer {a.quantizer})")
    for path in a.models or default_models():
        m = onnx.load(str(path), load_external_data=False)
        shape = input_shape(m)
        if shape is None or shape[0] != 3:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            aligned = os.path.join(tmp, "aligned.onnx")
            p = subprocess.run([a.align, str(path), "-o", aligned, "-q", *a.align_arg], capture_output=True, text=True)
            if p.returncode != 0:
                print(f"{path.name:48s} align failed: {p.stderr.strip().splitlines()[-1:]}")
                continue
            calib_u8 = smooth_images(a.calib, shape, 123)
            test_u8 = smooth_images(a.test, shape, 999)
            calib, test = calib_u8.astype(np.float32) / 255, test_u8.astype(np.float32) / 255
            ref = run_fp32(str(path), test)
            errs = {}
            try:
                for tag, model in (("orig", str(path)), ("aligned", aligned)):
                    if a.quantizer == "ort":
                        run = quant_ort(model, os.path.join(tmp, f"{tag}.qdq.onnx"), calib)
                        y = run(test)
                    else:
                        run = quant_rknn(model, os.path.join(tmp, f"{tag}.rknn"), calib_u8, tmp)
                        y = run(test_u8)
                    errs[tag] = np.abs(y - ref).mean(axis=1)
            except Exception as e:  # noqa: BLE001 - a quantizer refusing a model is a result too
                lines = [x for x in str(e).strip().splitlines() if x.strip()] or [type(e).__name__]
                print(f"{path.name:48s} {a.quantizer} failed on the {tag} model: {lines[-1][:100]}")
                continue
        o, al = errs["orig"], errs["aligned"]
        per = al / np.maximum(o, 1e-12)
        ratio = float(al.mean() / max(o.mean(), 1e-12))
        sem = float(per.std(ddof=1) / np.sqrt(len(per))) if len(per) > 1 else 0.0
        print(f"{path.name:48s} {o.mean():10.3e} {al.mean():11.3e} {ratio:6.3f}  {per.mean():.3f} ± {sem:.3f}")
        rows.append(dict(model=str(path.relative_to(REPO) if path.is_relative_to(REPO) else path),
                         quantizer=a.quantizer, orig=float(o.mean()), aligned=float(al.mean()), ratio=ratio,
                         per_image_mean=float(per.mean()), per_image_sem=sem, mean_abs_ref=float(np.abs(ref).mean())))
    if rows:
        r = sorted(x["ratio"] for x in rows)
        print(f"\n{len(rows)} models: median ratio {r[len(r) // 2]:.3f}, worst {r[-1]:.3f} "
              f"({max(rows, key=lambda x: x['ratio'])['model']}), best {r[0]:.3f}")
    if a.out:
        a.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
