#!/usr/bin/env python3
"""One version everywhere: Cargo.toml's `version` is the single source; the
binary, the Python module, the wheel, the sdist, the crate and CHANGELOG.md
must all say the same. Exit 1 naming each disagreement.

    versions.py [--binary PATH] [--python PY] [--wheel F] [--sdist F] [--crate F]
    versions.py --release vX.Y.Z [--repository URL]     # release.yml, before building
    versions.py --notes vX.Y.Z                           # that version's CHANGELOG section
    versions.py --action        # the GitHub Action, the release's binaries and the docs agree

Used by .ci/run (every artifact it builds) and .github/workflows/release.yml.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# files whose snippets and links name this repository (github.com/OWNER/NAME, uses: OWNER/NAME@)
USER_FACING = ["README.md", "docs/cli.md", "docs/python.md", "pyproject.toml", "CHANGELOG.md",
               ".pre-commit-hooks.yaml", "action.yml"]
# other projects those files may name
ELSEWHERE = {"actions/checkout"}
SECTION = re.compile(r"^## \[(?P<version>[^\]]+)\](?: - (?P<date>.+))?$", re.M)


def pep440(version: str) -> str:
    """maturin's spelling of a Cargo version in wheel and sdist names:
    1.2.0-alpha.1 -> 1.2.0a1, -beta.N -> bN, -rc.N -> rcN."""
    m = re.fullmatch(r"(\d+\.\d+\.\d+)(?:-(alpha|beta|rc)\.?(\d+))?", version)
    if not m:
        sys.exit(f"Cargo.toml version {version!r} has no PEP 440 spelling this check knows")
    base, pre, n = m.groups()
    return base + ({"alpha": "a", "beta": "b", "rc": "rc"}[pre] + n if pre else "")


def changelog_sections() -> dict[str, tuple[str | None, str]]:
    """{version: (date or None, body)} of CHANGELOG.md's `## [version] - date` sections."""
    text = (ROOT / "CHANGELOG.md").read_text()
    heads = list(SECTION.finditer(text))
    out = {}
    for i, h in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        body = text[h.end() : end]
        body = re.split(r"^\[[^\]]+\]: ", body, flags=re.M)[0]  # drop the link references
        out[h["version"]] = (h["date"], body.strip())
    return out


def action_problems() -> list[str]:
    """What the GitHub Action promises and the release delivers agree: every
    runner target action/install.sh downloads is one release.yml builds a
    binary for (the asset names themselves are package-binary.sh's: .ci/run
    installs one through install.sh), and every action.yml input is in
    docs/cli.md's input table, whose example uses only inputs that exist."""
    import yaml  # PyYAML, installed with pre-commit (.ci/requirements-release.txt)

    errors = []
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    release = yaml.safe_load((ROOT / ".github/workflows/release.yml").read_text())
    built = {row["target"] for row in release["jobs"]["binaries"]["strategy"]["matrix"]["include"]}
    install = (ROOT / "action/install.sh").read_text()
    wanted = set(re.findall(r"\) target=([\w-]+) ;;", install))
    if not wanted:
        errors.append("action/install.sh: no `) target=… ;;` lines found")
    for t in sorted(wanted - built):
        errors.append(f"action/install.sh downloads {t}, release.yml builds no binary for it")

    doc = (ROOT / "docs/cli.md").read_text()
    m = re.search(r"^## GitHub Action\n(.*?)(?=^## )", doc, re.S | re.M)
    if not m:
        errors.append("docs/cli.md has no '## GitHub Action' section")
    else:
        section = m[1]
        inputs = set(action["inputs"])
        for name in sorted(inputs):
            if f"| `{name}` |" not in section:
                errors.append(f"action.yml input {name!r} is not in docs/cli.md's input table")
        for block in re.findall(r"```yaml\n(.*?)```", section, re.S):
            for step in yaml.safe_load(block) or []:
                for key in (step.get("with") or {}) if isinstance(step, dict) else {}:
                    if key not in inputs:
                        errors.append(f"docs/cli.md's Action example uses input {key!r}, action.yml has none")
    return errors


def run(cmd: list[str]) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", help="an align executable: `align --version` must print `align VERSION`")
    ap.add_argument("--python", help="a Python with onnx-align installed: __version__ and the distribution's")
    ap.add_argument("--wheel", help="a built wheel file")
    ap.add_argument("--sdist", help="a built sdist file")
    ap.add_argument("--crate", help="a .crate from cargo package")
    ap.add_argument("--release", metavar="TAG", help="the tag being released: vVERSION, a dated CHANGELOG section")
    ap.add_argument("--repository", metavar="URL", help="Cargo.toml's repository must be this URL")
    ap.add_argument("--notes", metavar="TAG", help="print the CHANGELOG section of TAG and exit")
    ap.add_argument("--action", action="store_true", help="also: action.yml, install.sh, release.yml, docs agree")
    a = ap.parse_args()

    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    version = cargo["version"]
    sections = changelog_sections()

    if a.notes:
        v = a.notes.removeprefix("v")
        if v not in sections:
            sys.exit(f"CHANGELOG.md has no section [{v}]")
        print(sections[v][1])
        return 0

    found: list[tuple[str, str | None]] = []  # (where, the version it says)
    errors: list[str] = []
    if "version" in pyproject or "version" not in pyproject.get("dynamic", []):
        errors.append('pyproject.toml must not set a version: `dynamic = ["version"]` takes Cargo.toml\'s')
    found.append(("CHANGELOG.md section", version if version in sections else None))
    if a.binary:
        out = run([a.binary, "--version"])
        found.append((f"{a.binary} --version ({out!r})", out.removeprefix("align ") if out.startswith("align ") else None))
    if a.python:
        code = "import importlib.metadata as m, onnx_align; print(onnx_align.__version__); print(m.version('onnx-align'))"
        module, dist = run([a.python, "-c", code]).splitlines()
        found.append(("onnx_align.__version__", module))
        found.append(("installed onnx-align distribution", dist))
    # file names: onnx_align-VERSION-….whl, onnx_align-VERSION.tar.gz, onnx-align-VERSION.crate
    for what, path, pattern, spelled in [
        ("wheel", a.wheel, r"onnx_align-([^-]+)-.+\.whl", pep440(version)),
        ("sdist", a.sdist, r"onnx_align-(.+)\.tar\.gz", pep440(version)),
        ("crate", a.crate, r"onnx-align-(.+)\.crate", version),
    ]:
        if path:
            m = re.fullmatch(pattern, Path(path).name)
            found.append((f"{what} {Path(path).name}", version if m and m[1] == spelled else (m[1] if m else None)))
    if a.release:
        if a.release != f"v{version}":
            errors.append(f"tag {a.release} is not v{version}, Cargo.toml's version")
        date = sections.get(version, (None, ""))[0]
        if not date or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date):
            errors.append(f"CHANGELOG.md: date the section: '## [{version}] - YYYY-MM-DD' (it says {date!r})")
    repository = cargo.get("repository", "")
    if a.repository and repository.lower().rstrip("/") != a.repository.lower().rstrip("/"):
        errors.append(f"Cargo.toml repository is {repository!r}, this repository is {a.repository}")
    # every place a user copies this repository's name from says Cargo.toml's
    slug = repository.removeprefix("https://github.com/").strip("/")
    for name in USER_FACING:
        text = (ROOT / name).read_text()
        for other in set(re.findall(r"github\.com/([\w.-]+/[\w.-]+)", text)) | set(
            re.findall(r"uses: ([\w.-]+/[\w.-]+)@", text)
        ):
            if other.lower() != slug.lower() and other.lower() not in ELSEWHERE:
                errors.append(f"{name} names the repository {other}, Cargo.toml's is {slug}")

    if a.action:
        problems = action_problems()
        print(f"{'FAIL' if problems else 'ok  '} action.yml, action/install.sh, release.yml and docs/cli.md agree")
        errors += problems
    for where, said in found:
        ok = said == version or said == pep440(version)
        print(f"{'ok  ' if ok else 'FAIL'} {where}: {said}")
        if not ok:
            errors.append(f"{where} says {said}, Cargo.toml says {version}")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    print(f"version {version}: {len(found)} places checked, {len(errors)} disagreements")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
