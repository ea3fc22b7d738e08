#!/usr/bin/env python3
"""What padding does to single convs in onnxruntime (CPU, 1 thread): one 3x3 conv on a 56x56 input, original
widths vs padded widths (every group padded alike for grouped convs), median latency of 60 runs each.
The single-layer data behind `--max-growth` (docs/benchmarks.md, "Cost of padding"). Needs onnx, onnxruntime,
numpy:

    python bench/layer_growth.py
"""
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def conv_model(cin, cout, groups, k=3, hw=56):
    w = np.random.default_rng(0).random((cout, cin // groups, k, k), dtype=np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, hw, hw])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    n = helper.make_node("Conv", ["x", "w"], ["y"], group=groups, pads=[k // 2] * 4)
    g = helper.make_graph([n], "conv", [x], [y], [numpy_helper.from_array(w, "w")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8).SerializeToString()


def latency(model, cin, hw=56, runs=60):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).random((1, cin, hw, hw), dtype=np.float32)
    s.run(None, {"x": x})
    t = []
    for _ in range(runs):
        a = time.perf_counter()
        s.run(None, {"x": x})
        t.append(time.perf_counter() - a)
    return float(np.median(t))


CASES = [  # name, (in, out, groups) original, (in, out, groups) padded
    ("dense 37 -> 37", (37, 37, 1), (40, 40, 1)),
    ("dense 19 -> 37", (19, 37, 1), (24, 40, 1)),
    ("dense 9 -> 18", (9, 18, 1), (16, 24, 1)),
    ("dense 5 -> 5", (5, 5, 1), (8, 8, 1)),
    ("dense 3 -> 21 (SE)", (3, 21, 1), (8, 24, 1)),
    ("dense 1 -> 37", (1, 37, 1), (8, 40, 1)),
    ("dense 33 -> 33 at 64", (33, 33, 1), (64, 64, 1)),
    ("depthwise 37", (37, 37, 37), (40, 40, 40)),
    ("depthwise 3", (3, 3, 3), (8, 8, 8)),
    ("groups of 3 x16", (48, 48, 16), (128, 128, 16)),
    ("groups of 4 x16", (64, 64, 16), (128, 128, 16)),
    ("groups of 5 x16", (80, 80, 16), (128, 128, 16)),
    ("groups of 6 x16", (96, 96, 16), (128, 128, 16)),
    ("groups of 7 x8", (56, 56, 8), (64, 64, 8)),
    ("groups of 13 x4", (52, 52, 4), (64, 64, 4)),
]

if __name__ == "__main__":
    print(f"onnxruntime {ort.__version__}, CPU, 1 thread")
    for name, (ci, co, g), (pci, pco, pg) in CASES:
        a = latency(conv_model(ci, co, g), ci)
        b = latency(conv_model(pci, pco, pg), pci)
        macs = (pci * pco / pg) / (ci * co / g)
        print(f"{name:22s} MACs x{macs:5.2f}  latency {a * 1e3:7.3f} -> {b * 1e3:7.3f} ms  x{b / a:5.2f}")
