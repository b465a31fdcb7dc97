"""robustops' layers point one way: a module imports only from its own layer or below.

The import graph is built statically (``ast`` over ``robustops/**/*.py``), so the test
needs neither torch nor the extension and sees every import a run might take:

- imports anywhere in a file count, including those inside functions: a lazy import
  is still a dependency, it only moves the cost to first use;
- imports under ``if TYPE_CHECKING:`` count too: a lower layer that names a higher
  layer's type in its signatures still depends on that layer's design;
- relative imports are resolved against the importing module's package;
  ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``;
- ``importlib.import_module("robustops.x")`` with a literal (or an f-string whose literal
  head is ``robustops.x.``; relative names such as ``".bench.x"`` too) is an edge to that
  module or package.

``LAYERS`` is the one place the order is written down. Run this file as a script
(``python tests/test_import_layers.py``) to print every cross-layer edge.
"""
from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "robustops"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE

# Bottom to top. A module may import from its own layer and from any layer below it.
# Each entry names modules or packages (relative to robustops); a module belongs to
# the layer of its longest matching prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # Plumbing that knows no model: the compiled extension and its build check, backend
    # choice, argument checks, threads, progress lines, sync counting, torch.distributed
    # helpers (shared by train, eval and the CLI), the attacks' image box.
    ("base", ("_C", "_ops", "_build_meta", "extension_check", "backend", "arguments",
              "intra_op_threads", "registry_table", "progress", "sync_counter", "distributed", "image_box")),
    # Triton kernels sit under ops: ops/<op>.py dispatches to triton/<op>.py.
    ("triton", ("triton",)),
    # The counter-based RNG and random starts are functional ops over ops.counter_rng.
    ("ops", ("ops", "counter_rng", "random_init")),
    # Drop-in modules, with what they alone need (VOneBlock's Gabor parameter sampling).
    ("nn", ("nn",)),
    ("models", ("models",)),
    # Datasets import only ops today and need no attack, objective or evaluator: they sit
    # below everything that consumes batches (train, eval, studies, bench). Above models
    # rather than below nn: models never need a dataset, while a dataset may use model-side
    # pieces (Normalize statistics, a part model's target shapes) without a move.
    # The part-target packing (data.part_targets) lives here, beside the masks it packs;
    # the part objectives in train unpack it.
    ("data", ("data",)),
    # Attribution methods need only ops; the attribution attacks above them attack them.
    ("attributions", ("attributions",)),
    ("attacks", ("attacks",)),
    ("train", ("train",)),
    ("eval", ("eval",)),
    ("studies", ("studies",)),
    ("bench", ("bench",)),
    # Entry points and registries over everything: the facade (robustops/__init__),
    # config, recipes, the CLI, quickstart, user-code loading, test helpers.
    ("app", ("", "__main__", "cli", "config", "gpu_check", "quickstart", "recipes",
             "testing", "user_code")),
]
# Pairs (upper, lower) that the order lets import each other, but that stay apart: evaluation
# works on any model, trained here or not, so eval imports nothing from train; what they
# share (the torch.distributed helpers) lives in base.
KEPT_APART = {("eval", "train")}
# Written by setup.py, absent from a fresh checkout: robustops._ops (the kernels),
# robustops._C (build_info), robustops/_build_meta.py (what the extension was built against).
GENERATED = (f"{PACKAGE}._C", f"{PACKAGE}._ops", f"{PACKAGE}._build_meta")
LAYER_RANK = {name: rank for rank, (name, _) in enumerate(LAYERS)}


@dataclass(frozen=True)
class ImportEdge:
    """One import statement: ``source`` (module) imports ``target`` at ``path``:``line``."""

    source: str
    target: str
    path: Path
    line: int


def module_name(path: Path) -> str:
    """``robustops/a/b.py`` -> ``robustops.a.b``; ``robustops/a/__init__.py`` -> ``robustops.a``."""
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    return {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))
            if "__pycache__" not in p.parts}


def layer_of(module: str) -> str:
    """The layer of a dotted module name (longest matching prefix in ``LAYERS``)."""
    rel = module[len(PACKAGE) + 1:] if module != PACKAGE else ""
    best, best_len = None, -1
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            matches = rel == prefix or (prefix and rel.startswith(prefix + "."))
            if matches and len(prefix) > best_len:
                best, best_len = name, len(prefix)
    if best is None:
        raise ValueError(f"module {module} is in no layer: add it to LAYERS in {__file__}")
    return best


def _resolve(base: str, name: str | None, modules: dict[str, Path]) -> str:
    """``from base import name``: the module ``base.name`` if it exists, else ``base``."""
    if name is not None and f"{base}.{name}" in modules:
        return f"{base}.{name}"
    return base


def _dynamic_target(call: ast.Call) -> str | None:
    """The literal module name of ``importlib.import_module("...")``, if there is one."""
    func = call.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if called != "import_module" or not call.args:
        return None
    arg = call.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        head = str(arg.values[0].value)
        # f"robustops.studies.{name}": a module of that package, so an edge to the package.
        return head.rstrip(".") if head.endswith(".") else None
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[ImportEdge]:
    """Every robustops module that ``module`` imports, anywhere in its file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    edges = []

    def add(target: str, node: ast.AST) -> None:
        if target == PACKAGE or target.startswith(PACKAGE + "."):
            # A name imported from a module (not a submodule) is an edge to that module;
            # the modules setup.py writes are modules of their own, built or not.
            while target not in modules and target not in GENERATED and "." in target:
                target = target.rpartition(".")[0]
            edge = ImportEdge(module, target, path, node.lineno)
            if target != module and edge not in edges:  # one edge per line and target
                edges.append(edge)

    def absolute(level: int, name: str | None) -> str:
        """The absolute name of a relative import ``from <level dots><name> import ...``."""
        if not level:
            return name or ""
        parts = package.split(".")
        return ".".join(parts[:len(parts) - (level - 1)] + ([name] if name else []))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node)
        elif isinstance(node, ast.ImportFrom):
            base = absolute(node.level, node.module)
            for alias in node.names:
                add(_resolve(base, alias.name, modules), node)
        elif isinstance(node, ast.Call):
            target = _dynamic_target(node)
            if target is not None:
                # import_module(".bench.timing", __package__): relative to this package.
                name = target.lstrip(".")
                add(absolute(len(target) - len(name), name or None), node)
    return edges


def import_graph() -> list[ImportEdge]:
    """All robustops -> robustops import edges of the package."""
    modules = package_modules()
    return [edge for module, path in modules.items() for edge in imports_of(module, path, modules)]


def upward_edges(edges: list[ImportEdge]) -> list[str]:
    """Edges from a lower layer to a higher one (or between layers ``KEPT_APART``), as
    ``file:line  source (layer) -> target (layer)``."""
    found = []
    for edge in edges:
        src, dst = layer_of(edge.source), layer_of(edge.target)
        if LAYER_RANK[dst] > LAYER_RANK[src] or (src, dst) in KEPT_APART:
            where = f"{edge.path.relative_to(PACKAGE_DIR.parent)}:{edge.line}"
            apart = "  (kept apart)" if (src, dst) in KEPT_APART else ""
            found.append((str(edge.path), edge.line,
                          f"{where}  {edge.source} ({src}) -> {edge.target} ({dst}){apart}"))
    return [text for _, _, text in sorted(found)]


def test_every_module_has_a_layer():
    unplaced = []
    for module in package_modules():
        try:
            layer_of(module)
        except ValueError as err:
            unplaced.append(str(err))
    assert not unplaced, "\n".join(unplaced)


def test_graph_sees_every_kind_of_import(tmp_path):
    # The checker is only as good as its parser: one import of each kind it must see, in a
    # module placed (by name) at robustops/nn/planted.py.
    source = tmp_path / "planted.py"
    source.write_text(
        "import importlib\n"
        "from typing import TYPE_CHECKING\n"
        "import robustops.backend\n"                            # absolute
        "from . import gabor_conv\n"                            # relative, a submodule
        "from ..ops.gabor_bank import gabor_bank\n"             # a name from a module
        "from ..attacks import PGD\n"                           # a name from a package
        "if TYPE_CHECKING:\n"
        "    from ..models.part_model import PartModel\n"       # typing only: counted
        "def late(name):\n"
        "    from ..train import Trainer\n"                     # inside a function
        "    importlib.import_module('robustops._C')\n"         # generated, dynamic
        "    importlib.import_module(f'..bench.{name}', __package__)\n"  # dynamic, relative
        "    return importlib.import_module(f'robustops.studies.{name}')\n")
    edges = imports_of("robustops.nn.planted", source, package_modules())
    assert {(e.target, e.line) for e in edges} == {
        ("robustops.backend", 3), ("robustops.nn.gabor_conv", 4), ("robustops.ops.gabor_bank", 5),
        ("robustops.attacks", 6), ("robustops.models.part_model", 8), ("robustops.train", 10),
        ("robustops._C", 11), ("robustops.bench", 12), ("robustops.studies", 13)}


def test_layers_point_one_way():
    upward = upward_edges(import_graph())
    order = " <- ".join(name for name, _ in LAYERS)
    apart = ", ".join(f"{a} -/-> {b}" for a, b in sorted(KEPT_APART))
    assert not upward, (f"{len(upward)} import(s) point up the layers ({order}; {apart}); move "
                        "the shared piece down to the lowest layer that needs it:\n"
                        + "\n".join(upward))


def test_checker_flags_a_planted_upward_edge(tmp_path):
    # A test that cannot fail proves nothing: an nn module importing train must be caught.
    planted = PACKAGE_DIR / "nn" / "vone_block.py"
    copy = tmp_path / "vone_block.py"
    copy.write_text(planted.read_text() + "\n\ndef _late():\n    from ..train import Trainer\n")
    modules = package_modules()
    edges = imports_of("robustops.nn.vone_block", copy, modules)
    found = [e for e in edges if e.target == "robustops.train"]
    assert found and layer_of(found[0].source) == "nn" and layer_of(found[0].target) == "train"
    # upward_edges formats paths relative to the repository; point the planted edge there.
    planted_edge = ImportEdge(found[0].source, found[0].target, planted, found[0].line)
    assert upward_edges([planted_edge]) == [
        f"robustops/nn/vone_block.py:{found[0].line}  robustops.nn.vone_block (nn) -> robustops.train (train)"]
    # eval -> train is downward in the order but kept apart; eval -> attacks is allowed.
    robust_accuracy = PACKAGE_DIR / "eval" / "robust_accuracy.py"
    apart = ImportEdge("robustops.eval.robust_accuracy", "robustops.train.checkpoint", robust_accuracy, 7)
    allowed = ImportEdge("robustops.eval.robust_accuracy", "robustops.attacks.base", robust_accuracy, 8)
    assert upward_edges([apart, allowed]) == [
        "robustops/eval/robust_accuracy.py:7  robustops.eval.robust_accuracy (eval) -> "
        "robustops.train.checkpoint (train)  (kept apart)"]


if __name__ == "__main__":
    graph = import_graph()
    if "--all" in sys.argv:
        for e in sorted(graph, key=lambda e: (str(e.path), e.line)):
            print(f"{e.path.relative_to(PACKAGE_DIR.parent)}:{e.line}  {e.source} ({layer_of(e.source)})"
                  f" -> {e.target} ({layer_of(e.target)})")
    upward = upward_edges(graph)
    print("\n".join(upward) or "no upward edges")
    sys.exit(1 if upward else 0)
