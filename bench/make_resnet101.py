#!/usr/bin/env python3
"""Write a ~150 MB *pruned* torchvision ResNet-101 as ONNX, with BatchNormalization kept.

The large model of the benchmark (issue 12: align's cost next to `cp` and
onnxslim on a model whose time goes into moving weight bytes). Needs torch,
torchvision, torch_pruning, onnx and numpy (onnxruntime for --check); the
benchmark venv of bench/requirements.txt does not have them, so use a venv
with fixtures/packages/requirements.txt installed (outside the repository):

    /path/to/torch-venv/bin/python bench/make_resnet101.py            # bench/out/resnet101_pruned.onnx
    /path/to/torch-venv/bin/python bench/make_resnet101.py --check    # + onnxruntime vs PyTorch eager
    python bench/run.py --torch-python /path/to/torch-venv/bin/python # run.py calls this script when the file is missing

Model: torchvision's own `resnet101(weights=None, num_classes=1000)` (no
architecture re-implemented), random init after torch.manual_seed(seed).

Pruning: Torch-Pruning MetaPruner, GroupMagnitudeImportance(p=2), one step,
local (per-group) pruning ratio 0.0627 -- about 6-7 % channel sparsity,
chosen so that every width comes out odd: 64 -> 59, 128 -> 119, 256 -> 239,
512 -> 479, 1024 -> 959, 2048 -> 1919 (Torch-Pruning keeps
int(c * (1 - ratio)) channels of each group; at 0.07 the stage widths would be
952 and 1904, multiples of 8). Max ratio 0.8, round_to None, fc ignored (its 1000 outputs
stay; its 2048 inputs are pruned with layer4). All 104 convs end unaligned.
BN gamma/beta are randomised first so the magnitude ranking is not
degenerate -- fixtures/packages/generate.py's `tp_prune` / `build_resnet50`
recipe (there with global pruning, which on random weights leaves whole
stages at 1024), reusing fixtures/realworld/nets.py's `randomize_bn_affine`
and `randomize_and_calibrate_bn`.

BatchNorm: after pruning every BN's gamma ~ U(0.5, 1.5) and beta ~ N(0, 0.1^2)
are drawn again and running_mean / running_var are re-estimated on uniform
[0, 1) images (train-mode passes at 3x112x112, 6 batches of 4, cumulative
average), then eval(): non-trivial statistics (running_var from ~0.006 at
the stem to ~1, running_mean up to a few units), so BN folding is exercised
on real numbers. The logits on image-like inputs have rms ~70, max ~250.

Export: torch.onnx.export(dynamo=False) -- the TorchScript exporter -- at
1x3x224x224, opset 17, training=TrainingMode.PRESERVE with the model in eval
mode (BatchNormalization nodes kept, in inference form; without PRESERVE the
exporter fuses them into the convs) and do_constant_folding=False, input
`images`, output `output`. The file is re-serialised through onnx (one
protobuf encoding) and checked with onnx.checker.check_model(full_check=True).

torch.set_num_threads(1) keeps the numbers (and so the file) bit-reproducible.
Made with torch 2.15.0, torchvision 0.29.2, torch-pruning 1.6.1, onnx 1.23.2,
numpy 2.4.6 (onnxruntime 1.31.1 for --check), Python 3.11.7, seed 101:
156.74 MB (156,741,866 bytes), 39.16 M parameters (44.55 M unpruned), 104 Conv,
104 BatchNormalization, 33 Add, 1 Gemm, sha256 66cee4572fc2698169c0b02cb20b34903b6cd3d4edc0896d9c89cb5c815ea75e
(EXPECTED_SHA256). Other versions may give other bytes (the script says
whether the sha256 matches). Two runs gave byte-identical files; a run takes
~12 s and 1.9 GB peak RSS (2 cores).

--check: onnxruntime (CPU) runs the written file on two image-like inputs;
outputs must be finite, depend on the input, and match PyTorch eager within
1e-4 x max(1, max|y|) (measured: 6.4e-07). --check-only runs the onnxruntime
part on an existing file (no regeneration, no eager comparison).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import os
import sys
import tempfile
import time
import warnings

sys.dont_write_bytecode = True

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
import torch_pruning as tp  # noqa: E402
from torchvision.models import resnet101  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures", "realworld"))
from nets import randomize_and_calibrate_bn, randomize_bn_affine  # noqa: E402

SIZE = 224
OPSET = 17
SEED = 101
RATIO = 0.0627  # every width odd: int(c * (1 - RATIO)) for c = 64 ... 2048 is 59, 119, 239, 479, 959, 1919
EXPECTED_SHA256 = "66cee4572fc2698169c0b02cb20b34903b6cd3d4edc0896d9c89cb5c815ea75e"
VERSIONS = {"torch": "2.15.0", "torchvision": "0.29.2", "torch-pruning": "1.6.1", "onnx": "1.23.2", "numpy": "2.4.6"}


def build(seed: int, ratio: float) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(seed)
    m = resnet101(weights=None, num_classes=1000)
    shape = (1, 3, SIZE, SIZE)
    randomize_bn_affine(m, seed + 1)
    example = torch.rand(shape, generator=torch.Generator().manual_seed(seed + 1))
    before = sum(p.numel() for p in m.parameters())
    pruner = tp.pruner.MetaPruner(
        m, example, importance=tp.importance.GroupMagnitudeImportance(p=2), pruning_ratio=ratio,
        global_pruning=False, max_pruning_ratio=0.8, ignored_layers=[m.fc], round_to=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner.step()
    after = sum(p.numel() for p in m.parameters())
    randomize_and_calibrate_bn(m, seed + 1000, (3, 112, 112), n_batches=6, batch=4)
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m, dict(params_before=before, params_after=after)


def export(m: torch.nn.Module, path: str) -> bytes:
    x = torch.zeros(1, 3, SIZE, SIZE)
    with tempfile.TemporaryDirectory() as td:
        tmp = os.path.join(td, "m.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(m, (x,), tmp, dynamo=False, opset_version=OPSET,
                              training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False,
                              input_names=["images"], output_names=["output"])
        model = onnx.load(tmp)
    onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)
    return data


def describe(data: bytes) -> dict:
    model = onnx.load_from_string(data)
    g = model.graph
    ops: dict[str, int] = {}
    for n in g.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    inits = {t.name: t for t in g.initializer}
    widths = [int(inits[n.input[1]].dims[0]) for n in g.node if n.op_type == "Conv"]
    bns = [n for n in g.node if n.op_type == "BatchNormalization"]
    bn_modes = sorted({a.i for n in bns for a in n.attribute if a.name == "training_mode"})
    return dict(ops=ops, widths=widths, bn_training_mode=bn_modes,
                params=sum(int(np.prod(t.dims)) for t in g.initializer))


def rand_image(g: torch.Generator) -> torch.Tensor:
    """Image-like [0, 1): 0.7 x low-frequency noise (8x8 cells, bilinear) + 0.3 x pixel noise
    (fixtures/packages/generate.py's rand_image)."""
    lo = torch.rand((1, 3, SIZE // 8, SIZE // 8), generator=g)
    lo = torch.nn.functional.interpolate(lo, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return 0.7 * lo + 0.3 * torch.rand((1, 3, SIZE, SIZE), generator=g)


def ort_check(path: str, m: torch.nn.Module | None) -> None:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(123)
    xs = [rand_image(g), rand_image(g)]
    ys = [s.run(None, {"images": x.numpy()})[0] for x in xs]
    finite = all(np.isfinite(y).all() for y in ys)
    dep = float(np.abs(ys[0] - ys[1]).mean() / max(ys[0].std(), 1e-30))
    msg = (f"onnxruntime check: output {ys[0].shape}, finite={finite}, rms {float(np.sqrt((ys[0] ** 2).mean())):.3g}, "
           f"max |y| {float(np.abs(ys[0]).max()):.3g}, mean |y(x1)-y(x2)| / std(y) = {dep:.3f}")
    ok = finite and dep > 1e-3
    if m is not None:
        with torch.no_grad():
            ref = [m(x).numpy() for x in xs]
        err = max(float(np.abs(y - r).max() / max(1.0, float(np.abs(r).max()))) for y, r in zip(ys, ref))
        msg += f", max |ort - torch| / max(1, max|torch|) = {err:.1e}"
        ok = ok and err <= 1e-4
    print(msg)
    if not ok:
        sys.exit("onnxruntime check FAILED")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default=os.path.join(HERE, "out", "resnet101_pruned.onnx"))
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--check", action="store_true",
                    help="also run it in onnxruntime: finite, input-dependent, equal to PyTorch eager")
    ap.add_argument("--check-only", action="store_true", help="only run the onnxruntime check on an existing file")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.check_only:
        ort_check(a.out, None)
        return
    have = {k: md.version(k) for k in VERSIONS}
    if have != VERSIONS:
        print(f"note: versions differ from the ones this file was made with: {have} vs {VERSIONS}")
    t0 = time.perf_counter()
    m, info = build(a.seed, RATIO)
    t1 = time.perf_counter()
    data = export(m, a.out)
    t2 = time.perf_counter()
    d = describe(data)
    sha = hashlib.sha256(data).hexdigest()
    w = d["widths"]
    print(f"wrote {a.out}: {len(data) / 1e6:.2f} MB, {d['ops'].get('Conv', 0)} Conv, "
          f"{d['ops'].get('BatchNormalization', 0)} BatchNormalization (training_mode {d['bn_training_mode']}), "
          f"{d['ops'].get('Gemm', 0)} Gemm; params torch {info['params_after']:,} (unpruned {info['params_before']:,}), "
          f"ONNX initializers {d['params']:,}; input 1x3x{SIZE}x{SIZE}, opset {OPSET}, seed {a.seed}")
    print(f"conv out widths ({sum(x % 8 != 0 for x in w)} of {len(w)} not a multiple of 8, {sum(x % 2 for x in w)} odd): "
          + " ".join(map(str, w)))
    print("ops:", ", ".join(f"{k} {v}" for k, v in sorted(d["ops"].items())))
    print(f"time: build+prune+calibrate {t1 - t0:.1f} s, export+check+write {t2 - t1:.1f} s")
    print(f"sha256 {sha}" + (" (matches the one recorded in this script)" if sha == EXPECTED_SHA256 else
                             f" (differs from the one recorded in this script, {EXPECTED_SHA256[:16]}…)"))
    if a.check:
        ort_check(a.out, m)


if __name__ == "__main__":
    main()
