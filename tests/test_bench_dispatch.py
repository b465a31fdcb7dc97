"""The dispatch-overhead section of `robustops bench` (robustops/bench/dispatch.py)."""
import json
import subprocess
import sys

import robustops
import robustops.ops
from robustops.bench.dispatch import BASELINE, BASELINES, EXCLUDED, OPS, resolve


def test_every_public_function_is_benchmarked_or_excluded_with_a_reason():
    # A new public op must get a row (or an entry in EXCLUDED saying why not).
    covered = {id(resolve(path)) for path, _ in OPS.values()}
    covered |= {id(resolve(path)) for path in EXCLUDED}
    for module in (robustops, robustops.ops):
        for name in module.__all__:
            obj = getattr(module, name)
            if callable(obj) and not isinstance(obj, type):
                assert id(obj) in covered, f"{module.__name__}.{name} has no dispatch row"
    for path, reason in EXCLUDED.items():
        assert callable(resolve(path)) and reason, path


def test_every_listed_call_exists():
    for name, (path, _) in {**BASELINES, **OPS}.items():
        assert callable(resolve(path)), f"{name}: {path} does not exist"


def test_quick_section_through_the_cli(tmp_path):
    out = tmp_path / "dispatch.json"
    res = subprocess.run([sys.executable, "-m", "robustops", "bench", "--quick", "--only",
                          "dispatch", "--json", str(out)], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    assert "dispatch overhead" in res.stdout and "pgd_step linf" not in res.stdout
    rows = json.loads(out.read_text())["results"]
    assert [r["op"] for r in rows] == [*BASELINES, *OPS]
    for r in rows:
        assert r["us"] > 0 and r["ratio"] > 0 and r["baseline_us"] > 0, r
        assert r["threads"] == 1 and len(r["loadavg_before"]) == 3, r
        # The goal is judged for the ops only; the baselines carry none.
        assert (r["goal_met"] is None) == (r["op"] in BASELINES), r
    assert next(r for r in rows if r["op"] == BASELINE)["ratio"] == 1.0
