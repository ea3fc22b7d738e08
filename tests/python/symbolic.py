"""Concrete input shapes of the fixtures exported with symbolic dims, shared by
crosscheck.py and quantcheck.py: the random feeds use them, and align gets
them as --input-shape so its own verification runs at the same size."""

from __future__ import annotations

SHAPES = {
    "packages/ultralytics_yolov8n_detect_dynbhw_op17.onnx": {"images": (1, 3, 128, 128)},
    "packages/torchvision_shufflenetv2_dynbatch_op13.onnx": {"images": (1, 3, 64, 64)},
}


def align_args(name: str) -> list[str]:
    """--input-shape arguments for fixture `name` (relative to fixtures/)."""
    out = []
    for inp, shape in SHAPES.get(name, {}).items():
        out += ["--input-shape", f"{inp}=" + "x".join(str(d) for d in shape)]
    return out


def concrete(name: str, input_name: str, declared: tuple) -> tuple:
    """The shape to feed: the table's, else the declared one with symbolic dims as 1."""
    return tuple(SHAPES.get(name, {}).get(input_name, declared))
