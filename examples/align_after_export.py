#!/usr/bin/env python3
"""Align a freshly exported model in the export script, then quantize it.

The place for align in a Python pipeline is right after the export
(`torch.onnx.export`, an ultralytics `YOLO(...).export(format="onnx")`) and
before quantization (onnxruntime's `quantize_static`, rknn-toolkit2). This
script runs that pipeline on an ONNX file standing in for the export:

1. align it in memory: `onnx_align.align(model)` (ModelProto in, ModelProto
   out; tract proved the outputs unchanged);
2. gate: `onnx_align.check(...)["ok"]` must be true for the aligned model;
3. cross-check with onnxruntime that both models give the same outputs;
4. quantize the aligned model with onnxruntime's `quantize_static` (QDQ,
   per-channel int8) and run it.

    pip install onnx-align onnxruntime      # or `pip install .` in the repository
    python examples/align_after_export.py fixtures/v4_c3_deconv_bn_op13.onnx --out-dir /tmp/aligned

Exits non-zero (with the reason) if any step fails; CI runs it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

import onnx_align


def random_inputs(model: onnx.ModelProto, seed: int) -> dict:
    """Seeded uniform inputs for every graph input (symbolic dims as 1)."""
    rng = np.random.default_rng(seed)
    init = {t.name for t in model.graph.initializer}
    return {
        i.name: rng.uniform(-1, 1, [d.dim_value or 1 for d in i.type.tensor_type.shape.dim]).astype(np.float32)
        for i in model.graph.input
        if i.name not in init
    }


class RandomCalibration(CalibrationDataReader):
    """Calibration data for the example; use real images in your pipeline."""

    def __init__(self, model: onnx.ModelProto, n: int = 8) -> None:
        self.batches = iter([random_inputs(model, 100 + k) for k in range(n)])

    def get_next(self):
        return next(self.batches, None)


def run(path: Path | onnx.ModelProto, feeds: dict) -> list:
    src = str(path) if isinstance(path, Path) else path.SerializeToString()
    return ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, feeds)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path, help="the exported ONNX model")
    ap.add_argument("--out-dir", type=Path, required=True, help="where the aligned and quantized models go")
    ap.add_argument("--multiple", type=int, default=8, help="channel multiple of the target NPU (8, 16, 32)")
    args = ap.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)

    # 1. In your export script this is the model you just exported, e.g.
    #      buf = io.BytesIO(); torch.onnx.export(net, x, buf, opset_version=13)
    #      exported = onnx.load_from_string(buf.getvalue())
    #    or, with ultralytics:  exported = YOLO("pruned.pt").export(format="onnx")  (a path)
    exported = onnx.load(args.model)
    try:
        res = onnx_align.align(exported, multiple=args.multiple)
    except onnx_align.AlignError as e:  # InputError or VerificationError, one line
        print(f"align failed: {e}", file=sys.stderr)
        return 1
    s = res.summary
    print(
        f"aligned: unaligned free channel dims {s['unaligned_free_dims_before']} -> {s['unaligned_free_dims_after']}, "
        f"params {s['params_before']} -> {s['params_after']}, "
        f"max |diff| {max(o['max_abs'] for o in s['verification']['outputs']):.2e}"
    )
    aligned_path = args.out_dir / (args.model.stem + ".aligned.onnx")
    onnx.save(res.model, aligned_path)

    # 2. The gate: every free channel dim is a multiple now.
    gate = onnx_align.check(res.model, multiple=args.multiple)
    if not gate["ok"]:
        print(f"check failed: {gate['offenders'] + gate['unanalysed']}", file=sys.stderr)
        return 1
    pinned = [f"{p['node']} {p['side']} {p['channels']}" for p in gate["pinned"]]
    print(f"check: ok ({len(pinned)} pinned dims stay as they are: {', '.join(pinned) or 'none'})")

    # 3. An independent runtime agrees: same outputs before and after.
    feeds = random_inputs(exported, seed=1)
    worst = max(float(np.abs(a - b).max()) for a, b in zip(run(exported, feeds), run(res.model, feeds)))
    print(f"onnxruntime: original vs aligned max |diff| {worst:.2e}")
    if worst > 1e-4:
        print("onnxruntime outputs differ", file=sys.stderr)
        return 1

    # 4. Quantize the aligned model (rknn-toolkit2: rknn.load_onnx(model=str(aligned_path)) instead).
    int8_path = args.out_dir / (args.model.stem + ".aligned.int8.onnx")
    logging.getLogger().setLevel(logging.ERROR)  # the quantizer's pre-processing advice
    quantize_static(
        str(aligned_path),
        str(int8_path),
        RandomCalibration(exported),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
    )
    q = run(int8_path, feeds)
    print(f"quantized: {int8_path} ({len(q)} outputs, shapes {[list(o.shape) for o in q]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
