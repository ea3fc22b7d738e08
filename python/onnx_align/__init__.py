"""Zero-pad the channel widths of pruned ONNX CNNs to multiples of 8 (or 16,
32) without changing any output, proven with tract.

A thin binding of the Rust crate ``onnx-align`` (library ``align``): every
function runs the same code as the ``align`` command (with the GIL released).
Models go in as an
``onnx.ModelProto``, a path (external data is resolved beside it) or the
serialized bytes; results come back as an ``onnx.ModelProto`` and the dicts
that the command's ``--json`` prints (docs/json.md).

    import onnx, onnx_align
    res = onnx_align.align("model.onnx", multiple=8)
    onnx.save(res.model, "model.aligned.onnx")
    print(res.summary["unaligned_free_dims_after"])

Errors raise :class:`AlignError`: :class:`InputError` for a model align
cannot read or handle, :class:`VerificationError` when the rewritten model's
outputs differ; ``str(e)`` is the command's one-line message.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Sequence, Union

from . import _native
from ._native import AlignError, InputError, VerificationError

__all__ = [
    "AlignError",
    "InputError",
    "VerificationError",
    "Result",
    "align",
    "report",
    "check",
    "verify",
    "__version__",
]

if TYPE_CHECKING:
    import onnx

#: What a model may be given as: a ModelProto, a path, or its serialized bytes.
ModelLike = Union["onnx.ModelProto", str, "os.PathLike[str]", bytes]
#: Concrete shapes of inputs with symbolic dims, by input name.
Shapes = Optional[Mapping[str, Sequence[int]]]

__version__: str = _native.__version__

#: The summary of a failed :func:`align`; ``None`` when the error came from elsewhere.
VerificationError.summary = None


class Result:
    """What :func:`align` returns: the rewritten model and its summary."""

    __slots__ = ("model", "summary")
    model: "onnx.ModelProto"
    summary: Dict[str, Any]

    def __init__(self, model: "onnx.ModelProto", summary: Dict[str, Any]) -> None:
        #: The aligned model, an ``onnx.ModelProto``.
        self.model = model
        #: What align did: the object ``align MODEL --json`` prints.
        self.summary = summary

    def __repr__(self) -> str:
        s = self.summary
        return (
            f"Result(unaligned free dims {s['unaligned_free_dims_before']} -> "
            f"{s['unaligned_free_dims_after']}, params {s['params_before']} -> {s['params_after']})"
        )


def _source(model: ModelLike) -> Union[bytes, str, "os.PathLike[str]"]:
    """A ModelProto becomes its serialized bytes; paths and bytes pass as they are."""
    if isinstance(model, (bytes, str, os.PathLike)):
        return model
    if hasattr(model, "SerializeToString") and hasattr(model, "graph"):
        return model.SerializeToString()
    raise InputError(f"model must be an onnx.ModelProto, a path or bytes, not {type(model).__name__}")


def _shapes(input_shapes: Shapes) -> Optional[Dict[str, list]]:
    return None if input_shapes is None else {k: [int(d) for d in v] for k, v in input_shapes.items()}


def align(
    model: ModelLike,
    *,
    multiple: int = 8,
    passes: Union[None, str, Sequence[str]] = None,
    verify: bool = True,
    atol: Optional[float] = None,
    rtol: Optional[float] = None,
    trials: Optional[int] = None,
    seed: Optional[int] = None,
    input_shapes: Shapes = None,
    slice_pinned: bool = False,
    strict: bool = False,
    max_growth: Optional[float] = None,
) -> Result:
    """Align ``model``: fold BatchNormalization, zero-pad every free channel
    dim to a multiple of ``multiple``, and verify with tract that no output
    changed (``align MODEL``).

    ``passes`` is a subset of ``["fold-bn", "deconv", "pad"]`` (or the CLI's
    comma-separated string, or ``"none"``); ``None`` runs all.
    ``verify=False`` skips the equivalence check. The check holds every
    output to the original's own fp32 noise (docs/verify.md); ``strict=True``
    holds every element to ``atol + rtol·|a|`` instead (default 1e-4 each), and
    without it ``atol``/``rtol`` only mark elements as equal before the noise
    bound (default 0). ``trials=None`` picks as many random inputs as the
    input size calls for; ``seed`` defaults to the command's.
    ``input_shapes`` gives concrete shapes for inputs with symbolic dims,
    e.g. ``{"images": [1, 3, 640, 640]}``; a symbolic batch is verified at 1
    and symbolic H, W at the model's ``imgsz`` metadata without it.
    ``max_growth`` is the most padding may grow a layer's MACs (a factor;
    ``float("inf")`` for no limit; ``None``: the command's default): a layer
    over it keeps its widths, pinned for cost (``--max-growth``).

    Raises :class:`VerificationError` (with ``.summary``) when an output
    differs, :class:`InputError` when the model cannot be read or handled.
    Nothing is written to disk.
    """
    if passes is not None and not isinstance(passes, str):
        passes = ",".join(passes) if len(passes) else "none"
    try:
        data, summary = _native.align(
            _source(model),
            multiple=multiple,
            passes=passes,
            verify=verify,
            atol=atol,
            rtol=rtol,
            trials=trials,
            seed=seed,
            input_shapes=_shapes(input_shapes),
            slice_pinned=slice_pinned,
            strict=strict,
            max_growth=max_growth,
        )
    except VerificationError as e:
        if hasattr(e, "summary_json"):
            e.summary = json.loads(e.summary_json)
        raise
    import onnx

    return Result(onnx.ModelProto.FromString(data), json.loads(summary))


def report(
    model: ModelLike,
    *,
    multiple: int = 8,
    input_shapes: Shapes = None,
    slice_pinned: bool = False,
    max_growth: Optional[float] = None,
) -> Dict[str, Any]:
    """Per-layer channels, params and MACs, and what is pinned and why: the
    object ``align report MODEL --json`` prints."""
    return json.loads(
        _native.report(
            _source(model),
            multiple=multiple,
            input_shapes=_shapes(input_shapes),
            slice_pinned=slice_pinned,
            max_growth=max_growth,
        )
    )


def check(
    model: ModelLike,
    *,
    multiple: int = 8,
    strict: bool = False,
    input_shapes: Shapes = None,
    slice_pinned: bool = False,
    max_growth: Optional[float] = None,
) -> Dict[str, Any]:
    """The export gate: ``{"ok": bool, "offenders": [...], "pinned": [...], ...}``,
    the object ``align check MODEL --json`` prints. ``ok`` is false when a free
    or unanalysed channel dim is not a multiple (pinned ones too with
    ``strict=True``)."""
    return json.loads(
        _native.check(
            _source(model),
            multiple=multiple,
            strict=strict,
            input_shapes=_shapes(input_shapes),
            slice_pinned=slice_pinned,
            max_growth=max_growth,
        )
    )


def verify(
    original: ModelLike,
    candidate: ModelLike,
    *,
    atol: Optional[float] = None,
    rtol: Optional[float] = None,
    trials: Optional[int] = None,
    seed: Optional[int] = None,
    input_shapes: Shapes = None,
    strict: bool = False,
) -> Dict[str, Any]:
    """Run both models with tract on the same seeded random inputs and compare
    every output against the original's own fp32 noise (``strict=True``:
    element by element): ``{"passed": bool, "outputs": [{"name", "deviation",
    "allowed", "margin", ...}], ...}`` (the ``verification`` object of
    docs/json.md).

    A difference is reported as ``passed: False``, not raised; models that
    cannot be compared at all (different outputs or shapes) raise
    :class:`VerificationError`."""
    return json.loads(
        _native.verify(
            _source(original),
            _source(candidate),
            atol=atol,
            rtol=rtol,
            trials=trials,
            seed=seed,
            input_shapes=_shapes(input_shapes),
            strict=strict,
        )
    )
