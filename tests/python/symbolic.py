"""Concrete input shapes of the fixtures exported with symbolic dims, shared by
crosscheck.py and quantcheck.py for their onnxruntime feeds. align itself gets
no --input-shape: it verifies dynamic exports at batch 1 and at the imgsz their
metadata records, which is what these shapes are."""

from __future__ import annotations

SHAPES = {
    "packages/ultralytics_yolov8n_detect_dynbhw_op17.onnx": {"images": (1, 3, 128, 128)},
    "packages/torchvision_shufflenetv2_dynbatch_op13.onnx": {"images": (1, 3, 64, 64)},
    "blocks/torchvision_aspp_dynbhw_op17.onnx": {"images": (1, 3, 32, 32)},
}

# Symbolic H, W and no imgsz metadata: the one case align asks for a size.
ALIGN_ARGS = {"blocks/torchvision_aspp_dynbhw_op17.onnx": ["--input-shape", "images=1x3x32x32"]}


def concrete(name: str, input_name: str, declared: tuple) -> tuple:
    """The shape to feed: the table's, else the declared one with symbolic dims as 1."""
    return tuple(SHAPES.get(name, {}).get(input_name, declared))
