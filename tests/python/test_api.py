"""The installed onnx_align wheel: the Python API and the `align` command.

Run by .ci/run after `maturin build` and `pip install dist/*.whl` into a fresh
venv; `pytest -q tests/python/test_api.py`. Needs onnx, onnxruntime, numpy.
What it proves: ModelProto / path / bytes in, an onnx.ModelProto out that the
onnx checker accepts (full check) and that onnxruntime runs to the same
outputs as the original; report/check/verify give the objects the CLI's
--json prints; every error is an AlignError subclass with the CLI's one-line
message; the wheel's `align` command is the CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnx_align

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "fixtures"
PRUNED = FIX / "v4_c3_deconv_bn_op13.onnx"  # BN to fold, a ConvTranspose, widths like 19/37
ALIGNED = FIX / "aligned_op13.onnx"
EXTERNAL = FIX / "dynamo_op18" / "model.onnx"  # weights in model.onnx.data
ALIGN_CMD = shutil.which("align", path=str(Path(sys.executable).parent))


def run_ort(model: onnx.ModelProto, feeds: dict) -> list:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return s.run(None, feeds)


def random_feeds(model: onnx.ModelProto, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    init = {t.name for t in model.graph.initializer}
    feeds = {}
    for i in model.graph.input:
        if i.name in init:
            continue
        dims = [d.dim_value if d.dim_value > 0 else 1 for d in i.type.tensor_type.shape.dim]
        feeds[i.name] = rng.uniform(-1, 1, dims).astype(np.float32)
    return feeds


def assert_same_outputs(a: onnx.ModelProto, b: onnx.ModelProto) -> None:
    for seed in (1, 2):
        feeds = random_feeds(a, seed)
        for x, y in zip(run_ort(a, feeds), run_ort(b, feeds)):
            assert x.shape == y.shape
            assert np.abs(x).max() > 0, "outputs all zero: the comparison would prove nothing"
            np.testing.assert_allclose(y, x, atol=1e-4, rtol=1e-4)


# ---- align ----


@pytest.mark.parametrize(
    "name", ["v4_c3_deconv_bn_op13.onnx", "v3_csp_leaky_hswish_op11.onnx", "realworld/yolov8_c2f_op17.onnx"]
)
def test_modelproto_in_modelproto_out_checked_and_equal_in_onnxruntime(name):
    original = onnx.load(FIX / name)
    res = onnx_align.align(original)
    assert isinstance(res, onnx_align.Result)
    assert isinstance(res.model, onnx.ModelProto)
    onnx.checker.check_model(res.model, full_check=True)
    s = res.summary
    assert s["unaligned_free_dims_before"] > 0 and s["unaligned_free_dims_after"] == 0, s
    assert s["verification"]["passed"] is True and s["input"] is None and s["output"] is None
    assert s["params_after"] > s["params_before"]
    assert onnx_align.check(res.model)["ok"] is True
    assert onnx_align.check(original)["ok"] is False
    # graph inputs and outputs keep names and shapes
    assert [i.name for i in res.model.graph.input] == [i.name for i in original.graph.input]
    assert [o.type for o in res.model.graph.output] == [o.type for o in original.graph.output]
    assert_same_outputs(original, res.model)
    # the input object is not modified
    assert original == onnx.load(FIX / name)


def test_path_and_bytes_give_the_same_model():
    by_path = onnx_align.align(PRUNED)
    by_str = onnx_align.align(str(PRUNED))
    by_bytes = onnx_align.align(PRUNED.read_bytes())
    assert by_path.model == by_str.model == by_bytes.model
    assert by_path.summary["input"] == str(PRUNED)
    assert by_bytes.summary["input"] is None


def test_external_data_is_resolved_for_paths_and_refused_for_bytes():
    res = onnx_align.align(EXTERNAL)
    onnx.checker.check_model(res.model, full_check=True)
    assert_same_outputs(onnx.load(EXTERNAL), res.model)
    # the returned model carries its weights inline
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in res.model.graph.initializer)
    refs = onnx.load(EXTERNAL, load_external_data=False)
    with pytest.raises(onnx_align.InputError, match="stored as external data.*pass the model's path"):
        onnx_align.align(refs)


def test_options_reach_the_pipeline():
    res = onnx_align.align(PRUNED, multiple=16, verify=False)
    assert res.summary["multiple"] == 16 and res.summary["verification"] is None
    assert onnx_align.check(res.model, multiple=16)["ok"] is True
    # passes: none round-trips the model unchanged
    original = onnx.load(PRUNED)
    same = onnx_align.align(original, passes="none", verify=False)
    assert same.model == original
    assert onnx_align.align(original, passes=[], verify=False).model == original
    only_bn = onnx_align.align(original, passes=["fold-bn"])
    assert [p["pass"] for p in only_bn.summary["passes"]] == ["fold-bn"]
    assert only_bn.summary["unaligned_free_dims_after"] > 0
    res = onnx_align.align(original, trials=1, atol=1e-3, rtol=0.0, seed=7)
    v = res.summary["verification"]
    assert v["trials"] == 1 and v["tolerance"] == {"atol": 1e-3, "rtol": 0.0}


def test_input_shapes_for_symbolic_inputs():
    m = onnx.load(ALIGNED)
    name = m.graph.input[0].name
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    # a symbolic batch verifies at 1 with no argument and stays symbolic
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    res = onnx_align.align(m)
    assert res.summary["verification"]["passed"] is True
    assert res.model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    # a symbolic height with no imgsz metadata needs input_shapes
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    with pytest.raises(onnx_align.InputError, match="graph input 'images' has a symbolic dim"):
        onnx_align.align(m)
    res = onnx_align.align(m, input_shapes={name: [1] + dims[1:]})
    assert res.summary["verification"]["passed"] is True
    assert res.model.graph.input[0].type.tensor_type.shape.dim[2].dim_param == "height"
    with pytest.raises(onnx_align.InputError, match="positive"):
        onnx_align.align(m, input_shapes={name: [0] + dims[1:]})


# ---- report / check / verify ----


def cli_json(*args: str) -> dict:
    out = subprocess.run([ALIGN_CMD, *args, "--json"], capture_output=True, text=True)
    assert out.returncode in (0, 1), out.stderr
    return json.loads(out.stdout)


def test_report_and_check_are_the_cli_json():
    assert onnx_align.report(PRUNED) == cli_json("report", str(PRUNED))
    assert onnx_align.report(PRUNED, multiple=32) == cli_json("report", str(PRUNED), "--multiple", "32")
    c = onnx_align.check(PRUNED)
    assert c == cli_json("check", str(PRUNED))
    assert c["ok"] is False and len(c["offenders"]) > 10
    assert onnx_align.check(ALIGNED)["ok"] is True
    assert onnx_align.check(ALIGNED, strict=True) == cli_json("check", str(ALIGNED), "--strict")


def test_max_growth_is_the_cli_flag():
    # a MobileNetV3 whose stem was pruned to 3 channels: 3 -> 8 is x2.67
    m = FIX / "packages" / "torchvision_mobilenetv3small_dynamo_op18.onnx"
    default = onnx_align.report(m)
    assert default == cli_json("report", str(m))
    assert any(r.startswith("cost: padding 3 → 8") for p in default["pinned"] for r in p["reasons"])
    unlimited = onnx_align.report(m, max_growth=float("inf"))
    assert unlimited == cli_json("report", str(m), "--max-growth", "inf")
    assert not any(r.startswith("cost:") for p in unlimited["pinned"] for r in p["reasons"])
    assert unlimited["totals"]["free_unaligned"] > default["totals"]["free_unaligned"]
    with pytest.raises(onnx_align.InputError, match="max growth must be at least 1"):
        onnx_align.report(m, max_growth=0.5)


def test_verify_passes_for_aligned_and_fails_for_a_changed_weight():
    original = onnx.load(PRUNED)
    aligned = onnx_align.align(original).model
    v = onnx_align.verify(original, aligned)
    assert v["passed"] is True and all(o["mismatches"] == 0 for o in v["outputs"])
    broken = onnx.ModelProto()
    broken.CopyFrom(aligned)
    w = next(t for t in broken.graph.initializer if len(t.dims) == 4)
    arr = onnx.numpy_helper.to_array(w).copy()
    arr.flat[np.argmax(np.abs(arr))] += 1.0
    w.CopyFrom(onnx.numpy_helper.from_array(arr, w.name))
    v = onnx_align.verify(original, broken)
    assert v["passed"] is False and sum(o["mismatches"] for o in v["outputs"]) > 0
    # models that cannot be compared raise, naming both files
    other = FIX / "v3_csp_leaky_hswish_op11.onnx"
    with pytest.raises(onnx_align.VerificationError, match=f"^{PRUNED} vs {other}: output .* has shape") as e:
        onnx_align.verify(PRUNED, other)
    assert e.value.summary is None


# ---- errors ----


def test_errors_are_align_errors_with_the_cli_message(tmp_path):
    with pytest.raises(onnx_align.InputError, match=r"^.*missing\.onnx: cannot read: no such file$"):
        onnx_align.align(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a model")
    for f in (onnx_align.align, onnx_align.report, onnx_align.check):
        with pytest.raises(onnx_align.InputError) as e:
            f(junk)
        assert str(e.value).startswith(f"{junk}: not an ONNX model"), e.value
        assert "\n" not in str(e.value)
    with pytest.raises(onnx_align.InputError, match="not an ONNX model"):
        onnx_align.align(b"\x00\x01garbage")
    with pytest.raises(onnx_align.InputError, match="unknown pass 'fold'"):
        onnx_align.align(PRUNED, passes="fold")
    with pytest.raises(onnx_align.InputError, match="multiple must be"):
        onnx_align.check(PRUNED, multiple=0)
    with pytest.raises(onnx_align.InputError, match="must be an onnx.ModelProto, a path or bytes, not int"):
        onnx_align.align(42)
    # a malformed graph names the node
    m = onnx.load(PRUNED)
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    conv.input[0] = "nowhere"
    with pytest.raises(onnx_align.InputError, match=f"node '{conv.name}': input 'nowhere' is not produced"):
        onnx_align.align(m)
    assert issubclass(onnx_align.InputError, onnx_align.AlignError)
    assert issubclass(onnx_align.VerificationError, onnx_align.AlignError)
    assert issubclass(onnx_align.AlignError, Exception)


def test_failed_verification_raises_with_the_summary():
    # folding BN moves outputs by ~1e-6: the strict elementwise check with
    # zero tolerance fails
    with pytest.raises(onnx_align.VerificationError) as e:
        onnx_align.align(PRUNED, strict=True, atol=0.0, rtol=0.0)
    assert str(e.value).startswith(f"{PRUNED}: verification failed: 'output' is off by ")
    assert e.value.summary["verification"]["passed"] is False
    assert e.value.summary["output"] is None


def test_the_gil_is_released_while_rust_works():
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.005)

    t = threading.Thread(target=tick)
    t.start()
    try:
        t0 = time.perf_counter()
        onnx_align.align(FIX / "realworld" / "yolov8_c2f_op17.onnx", trials=5)
        t1 = time.perf_counter()
    finally:
        stop.set()
        t.join()
    during = [x for x in ticks if t0 < x < t1]
    # a thread that could not take the GIL would not tick at all during the call
    assert t1 - t0 > 0.05 and len(during) >= 5, (t1 - t0, len(during))


# ---- the wheel's align command ----


def test_the_installed_align_command_is_the_cli(tmp_path):
    assert ALIGN_CMD, "the wheel installs an `align` script beside this python"
    v = subprocess.run([ALIGN_CMD, "--version"], capture_output=True, text=True)
    assert v.returncode == 0 and v.stdout.strip() == f"align {onnx_align.__version__}"
    out = tmp_path / "a.onnx"
    r = subprocess.run([ALIGN_CMD, str(PRUNED), "-o", str(out), "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["output"] == str(out)
    assert onnx.load(out) == onnx_align.align(PRUNED).model
    assert subprocess.run([ALIGN_CMD, "check", str(out)], capture_output=True).returncode == 0
    gate = subprocess.run(
        [ALIGN_CMD, "check", str(out), str(PRUNED), "--format", "github"], capture_output=True, text=True
    )
    assert gate.returncode == 1
    assert f"::error file={PRUNED}," in gate.stdout
    bad = subprocess.run([ALIGN_CMD, "check", str(tmp_path / "nope.onnx")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("align: error: ") and "nope.onnx" in bad.stderr
    assert subprocess.run([ALIGN_CMD, "--bogus"], capture_output=True).returncode == 2
    m = subprocess.run([sys.executable, "-m", "onnx_align", "check", str(ALIGNED)], capture_output=True)
    assert m.returncode == 0
