"""The Python examples of docs/python.md, run against the installed wheel.

Every ```python block is run in a fresh namespace (with ``onnx`` and
``onnx_align`` imported, as the page's first example does) in a temporary
folder holding ``model.onnx`` (a pruned fixture), unless it imports a package
this environment does not have: CI installs neither torch nor ultralytics, so
the export examples are skipped, each reported with what it lacks. At least
one block must run.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "python.md"
MODEL = ROOT / "fixtures" / "v4_c3_deconv_bn_op13.onnx"


def blocks() -> list[tuple[int, str]]:
    text = DOC.read_text()
    out = []
    for m in re.finditer(r"```python\n(.*?)```", text, re.S):
        out.append((text[: m.start()].count("\n") + 1, m.group(1)))
    return out


def missing(code: str) -> list[str]:
    """Top-level packages `code` imports that are not installed."""
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return sorted(n for n in names if importlib.util.find_spec(n) is None)


def test_the_page_has_examples_and_some_run_here():
    found = blocks()
    assert found, f"no ```python block in {DOC}"
    assert any(not missing(code) for _, code in found), "every example needs a package CI does not install"


@pytest.mark.parametrize("line,code", blocks(), ids=lambda v: f"line{v}" if isinstance(v, int) else "")
def test_example_runs(line, code, tmp_path):
    lacks = missing(code)
    if lacks:
        pytest.skip(f"docs/python.md:{line} imports {', '.join(lacks)}, not installed here")
    shutil.copy(MODEL, tmp_path / "model.onnx")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile("import onnx, onnx_align\n" + code, f"docs/python.md:{line}", "exec"), {})
    finally:
        os.chdir(cwd)
