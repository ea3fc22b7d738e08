"""Type stubs of onnx_align (see __init__.py for the docs)."""

import os
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import onnx

ModelLike = Union[onnx.ModelProto, str, "os.PathLike[str]", bytes]
Shapes = Optional[Mapping[str, Sequence[int]]]

__version__: str

class AlignError(Exception):
    """An align failure; ``str(e)`` is the command's one-line message."""

class InputError(AlignError):
    """The model could not be read or align cannot handle it (the command's exit code 2)."""

class VerificationError(AlignError):
    """The rewritten model's outputs differ from the original's (the command's exit code 1)."""

    summary: Optional[Dict[str, Any]]
    """The summary of the failed :func:`align` (``None`` from :func:`verify`)."""

class Result:
    """The rewritten model and what align did."""

    model: onnx.ModelProto
    summary: Dict[str, Any]
    def __init__(self, model: onnx.ModelProto, summary: Dict[str, Any]) -> None: ...

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
) -> Result:
    """Fold BN, zero-pad free channel dims to ``multiple``, verify with tract."""

def report(
    model: ModelLike, *, multiple: int = 8, input_shapes: Shapes = None, slice_pinned: bool = False
) -> Dict[str, Any]:
    """The object ``align report MODEL --json`` prints."""

def check(
    model: ModelLike,
    *,
    multiple: int = 8,
    strict: bool = False,
    input_shapes: Shapes = None,
    slice_pinned: bool = False,
) -> Dict[str, Any]:
    """The object ``align check MODEL --json`` prints; ``"ok"`` is the verdict."""

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
    """Compare both models' outputs on seeded random inputs; ``"passed"`` is the verdict."""
