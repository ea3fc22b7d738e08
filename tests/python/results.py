"""Per-model check results and their table, shared by crosscheck.py and
quantcheck.py (each script imports it from its own folder)."""

from __future__ import annotations

import time


class Result:
    """The checks run on one model: (check, PASS / FAIL / SKIP, detail)."""

    def __init__(self, model: str):
        self.model = model
        self.checks = []
        self.seconds = 0.0

    def add(self, check, ok, detail=""):
        self.checks.append((check, "PASS" if ok else "FAIL", detail))
        return ok

    def skip(self, check, detail):
        self.checks.append((check, "SKIP", detail))

    @property
    def passed(self):
        return bool(self.checks) and all(s != "FAIL" for _, s, _ in self.checks)


def print_table(results):
    w_model = max([len("model")] + [len(r.model) for r in results])
    w_check = max([len("check")] + [len(c) for r in results for c, _, _ in r.checks])
    header = f"{'model':<{w_model}}  {'check':<{w_check}}  result  detail"
    print(header)
    print("-" * len(header))
    for r in results:
        for check, status, detail in r.checks:
            print(f"{r.model:<{w_model}}  {check:<{w_check}}  {status:<6}  {detail}")
        verdict = "PASS" if r.passed else "FAIL"
        print(f"{r.model:<{w_model}}  {'=> model':<{w_check}}  {verdict:<6}  {r.seconds:.1f} s")
        print()


def run_all_models(tool: str, models, check, name) -> int:
    """Runs `check(model)` on every model (a missing file or an exception
    fails that model only), prints the table and the closing line
    `TOOL: N passed, M failed` that CI reads; returns the exit code."""
    results = []
    t0 = time.monotonic()
    for m in models:
        if not m.exists():
            r = Result(name(m))
            r.add("model exists", False, str(m))
            results.append(r)
            continue
        try:
            results.append(check(m))
        except Exception as e:  # noqa: BLE001 - one broken model must not hide the others
            r = Result(name(m))
            r.add(f"{tool} ran", False, f"{type(e).__name__}: {e}")
            results.append(r)
    print_table(results)
    passed = sum(r.passed for r in results)
    failed = len(results) - passed
    print(f"total time {time.monotonic() - t0:.1f} s")
    print(f"{tool}: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1
