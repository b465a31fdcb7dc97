"""Every benchmark checks what it times: each test function of benchmarks/ holds an assert
statement or calls a checking helper (a name starting with assert, such as the
assert_matches_reference fixture of benchmarks/conftest.py, robustops.testing's
assert_close or numpy's assert_allclose), so a fast kernel that computes the wrong thing
cannot post a time."""
import ast
import pathlib
import re

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
CHECKING_CALL = re.compile(r"_?assert")


def _called_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _helpers(tree: ast.Module) -> set:
    """Names of the module's own functions that check (assert, call a checking helper, or
    call such a function of the module), so a benchmark may call one of them instead."""
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    helpers: set = set()
    while True:  # to a fixed point: a helper may check through another helper
        more = {f.name for f in functions if checks_its_result(f, helpers)}
        if more == helpers:
            return helpers
        helpers = more


def checks_its_result(function: ast.FunctionDef, helpers: set) -> bool:
    for node in ast.walk(function):
        if isinstance(node, ast.Assert):
            return True
        if isinstance(node, ast.Call):
            name = _called_name(node)
            if CHECKING_CALL.match(name) or name in helpers:
                return True
    return False


def _benchmark_functions():
    for path in sorted(BENCHMARKS.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        helpers = _helpers(tree)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                yield path.name, node, helpers


def test_there_are_benchmarks_to_check():
    assert len(list(_benchmark_functions())) >= 15


@pytest.mark.parametrize("file, function, helpers", list(_benchmark_functions()),
                         ids=lambda v: v.name if isinstance(v, ast.FunctionDef) else
                         (v if isinstance(v, str) else ""))
def test_every_benchmark_checks_its_result(file, function, helpers):
    assert checks_its_result(function, helpers), (
        f"benchmarks/{file}::{function.name} times a result it never checks: compare it "
        "with the reference it races before timing (assert_matches_reference fixture of "
        "benchmarks/conftest.py, or an assert)")


def test_the_check_finds_a_benchmark_that_asserts_nothing():
    tree = ast.parse("def helper(x):\n    assert x\n"
                     "def test_silent(benchmark):\n    benchmark(sum, [1])\n"
                     "def test_compares(benchmark, assert_matches_reference):\n"
                     "    assert_matches_reference(1, 1, 'one')\n"
                     "def test_helper(benchmark):\n    helper(benchmark(sum, [1]))\n"
                     "def outer(x):\n    helper(x)\n"
                     "def test_outer(benchmark):\n    outer(benchmark(sum, [1]))\n")
    helpers = _helpers(tree)
    verdicts = {f.name: checks_its_result(f, helpers) for f in tree.body
                if f.name.startswith("test_")}
    assert verdicts == {"test_silent": False, "test_compares": True, "test_helper": True,
                        "test_outer": True}
