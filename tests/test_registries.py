"""One registry per kind (datasets, models, objectives): config validation, `--help` and
recipes are derived from it, no other module keeps its own list, and a new entry shows
everywhere."""
import ast
import json
import math
import pathlib

import pytest
import torch
from torch.utils.data import TensorDataset

import robustops
from robustops import cli, config, recipes
from robustops.config import ConfigError
from robustops.data.dataset_registry import DATASETS, DatasetEntry, register_dataset
from robustops.models.registry import MODEL_FAMILIES, ModelFamily, register_model
from robustops.testing import write_part_imagenet_folder
from robustops.train import OBJECTIVES, CrossEntropy
from robustops.train.objective_registry import (OBJECTIVE_ENTRIES, ObjectiveEntry,
                                                register_objective)

REGISTRIES = {"dataset": DATASETS, "model": MODEL_FAMILIES, "objective": OBJECTIVE_ENTRIES}
REGISTRY_MODULES = {"data/dataset_registry.py", "models/registry.py",
                    "train/objective_registry.py"}
# Lists that share names with a registry but are another thing's own choices, not a
# second registry of what config / CLI / recipes accept (each checked to still exist).
OWN_CHOICES = {("models/vonenet.py", "BACKBONES"): "VOneNet's back-ends ('small' included)",
               ("studies/part_models.py", "ADV_OBJECTIVES"): "the part study's --adv-objective",
               ("studies/robust_attribution.py", "MODELS"): "the attribution study's arms"}
# The modules config, CLI and recipes are made of: not even an inline list of names.
DERIVED = {"config.py", "cli.py", "recipes.py", "train/__init__.py",
           "train/objectives/__init__.py", "models/__init__.py", "data/__init__.py"}


def _help(command):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args([command, "--help"])


def _help_text(capsys, command):
    _help(command)
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


def _compatible(kind, name, tmp_path):
    """Overrides that make a config around registry entry `name` of `kind` valid."""
    o = {"dataset": ("data", "dataset"), "model": ("model", "name"),
         "objective": ("objective", "name")}[kind]
    out = [(*o, name, "test")]
    needs_parts = ((kind == "objective" and OBJECTIVE_ENTRIES[name].needs_parts)
                   or (kind == "model" and MODEL_FAMILIES[name].part_model))
    if needs_parts:
        if kind != "model":
            out.append(("model", "name", "part_model", "test"))
        out.append(("data", "dataset", "parts", "test"))
    if kind == "dataset" and DATASETS[name].needs_root:
        out.append(("data", "root", str(tmp_path), "test"))
    return out


@pytest.mark.parametrize("kind,name", [(k, n) for k, r in REGISTRIES.items() for n in r])
def test_every_registered_name_is_valid_in_config_and_listed_in_help(kind, name, tmp_path,
                                                                     capsys):
    cfg = config.load(None, _compatible(kind, name, tmp_path))
    section, key = {"dataset": ("data", "dataset"), "model": ("model", "name"),
                    "objective": ("objective", "name")}[kind]
    assert cfg[section][key] == name
    assert name in config.SCHEMA[section][key].valid_choices()
    commands = ("train",) if kind == "objective" else ("train", "eval")
    for command in commands:
        text = _help_text(capsys, command)
        flag = {"dataset": "--dataset", "model": "--model", "objective": "--objective"}[kind]
        entry = text.split("options:", 1)[1].split(f"{flag} STR", 1)[1].split(" --", 1)[0]
        listed = [v.strip() for v in entry.split("one of:", 1)[1].split(",")]
        assert name in listed, (command, entry)


def test_config_and_recipes_read_the_registries():
    assert config.DATASETS == tuple(DATASETS) == recipes.DATASETS
    assert config.OBJECTIVES == tuple(OBJECTIVE_ENTRIES) == tuple(OBJECTIVES)
    assert config.MODELS == tuple(MODEL_FAMILIES) == recipes.MODELS
    assert all(OBJECTIVES[n] is e.cls and e.cls.name == n for n, e in OBJECTIVE_ENTRIES.items())
    with pytest.raises(ConfigError, match="did you mean 'part_trades'"):
        config.load(None, [("objective", "name", "part_trade", "--objective")])


def _module_lists(path: pathlib.Path, everywhere: bool):
    """(assigned name or None, line, names of one kind) for each literal tuple / list / set /
    dict-keys holding 2+ names of one registry: module-level assignments, or (everywhere)
    any literal."""
    tree = ast.parse(path.read_text())
    exports = {id(n) for stmt in tree.body if isinstance(stmt, (ast.Assign, ast.AugAssign))
               and any(isinstance(t, ast.Name) and t.id == "__all__" for t in
                       (stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]))
               for n in ast.walk(stmt.value)}  # __all__ exports functions named as families
    if everywhere:
        nodes = [(None, n) for n in ast.walk(tree) if id(n) not in exports]
    else:
        nodes = []
        for stmt in tree.body:
            if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                label = ", ".join(t.id for t in targets if isinstance(t, ast.Name))
                nodes += [(label, n) for n in ast.walk(stmt.value)] if stmt.value else []
    for label, node in nodes:
        if label == "__all__":
            continue
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            items = node.elts
        elif isinstance(node, ast.Dict):
            items = [k for k in node.keys if k is not None]
        else:
            continue
        words = {e.value for e in items if isinstance(e, ast.Constant) and isinstance(e.value, str)}
        for kind, registry in REGISTRIES.items():
            if len(words & set(registry)) >= 2:
                yield label, node.lineno, kind


def test_no_module_keeps_its_own_list_of_registered_names():
    root = pathlib.Path(robustops.__file__).parent
    found, seen = [], set()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel in REGISTRY_MODULES:
            continue
        for label, line, kind in _module_lists(path, everywhere=rel in DERIVED):
            if (rel, label) in OWN_CHOICES:
                seen.add((rel, label))
                continue
            found.append(f"{rel}:{line} {label or 'a literal'} lists {kind} names")
    assert not found, "names kept outside their registry: " + "; ".join(found)
    assert seen == set(OWN_CHOICES)  # the exceptions are real (the scan can find lists)


@pytest.fixture
def new_entries():
    """A dataset, a model family and an objective registered for one test, then removed."""
    def build_data(data, split, seed, parts):
        g = torch.Generator().manual_seed(seed)
        return TensorDataset(torch.rand(8, 1, 16, 16, generator=g), torch.arange(8) % 2), {
            "in_channels": 1, "image_size": 16, "num_classes": 2}

    class Plain(CrossEntropy):
        name = "plain_ce_for_test"

    def build_model(meta, stem):
        return torch.nn.Sequential(torch.nn.Flatten(),
                                   torch.nn.Linear(meta["image_size"] ** 2, meta["num_classes"]))

    added = [(DATASETS, register_dataset(DatasetEntry("noise_for_test", "random", build_data))),
             (MODEL_FAMILIES, register_model(ModelFamily("linear_for_test", "a linear map",
                                                         build_model, stems=("auto",)))),
             (OBJECTIVE_ENTRIES, register_objective(ObjectiveEntry(
                 Plain, "CE again", lambda s, seed: Plain())))]
    try:
        yield [e.name for _, e in added]
    finally:
        for registry, entry in added:
            registry.pop(entry.name, None)


def test_a_new_entry_shows_in_config_help_recipes_and_train(new_entries, capsys, tmp_path):
    data, model, objective = new_entries
    assert data in config.DATASETS and model in config.MODELS and objective in OBJECTIVES
    text = _help_text(capsys, "train")
    assert all(n in text for n in new_entries)
    cfg = config.load(None, [("data", "dataset", data, "--dataset"),
                             ("model", "name", model, "--model"),
                             ("objective", "name", objective, "--objective"),
                             ("run", "out", str(tmp_path / "run"), "test")])
    train, meta = config.build_dataset(cfg, "train")
    net = config.build_model(cfg, meta)
    obj = config.build_objective(cfg)
    loss, _ = obj.compute(net, train.tensors[0], train.tensors[1])
    assert loss.ndim == 0 and type(obj).name == objective
    assert isinstance(recipes.model(model, meta), torch.nn.Sequential)


def test_registering_a_taken_name_or_a_wrong_type_is_refused():
    with pytest.raises(ValueError, match="registered already"):
        register_dataset(DATASETS["parts"])
    with pytest.raises(ValueError, match="registered already"):
        register_model(MODEL_FAMILIES["resnet18"])
    with pytest.raises(ValueError, match="registered already"):
        register_objective(OBJECTIVE_ENTRIES["part_mat"])
    with pytest.raises(TypeError, match="ModelFamily"):
        register_model("resnet18")


# ----------------------------------------------------------------------------- part objectives


@pytest.mark.parametrize("objective", ["part_semi", "part_trades", "part_mat"])
def test_part_objectives_refuse_data_and_models_without_parts(objective):
    with pytest.raises(ConfigError, match="has no part masks.*parts, part_imagenet"):
        config.load(None, [("objective", "name", objective, "--objective"),
                           ("model", "name", "part_model", "--model")])
    with pytest.raises(ConfigError, match="not one: use --model part_model"):
        config.load(None, [("objective", "name", objective, "--objective"),
                           ("data", "dataset", "parts", "--dataset")])
    with pytest.raises(ConfigError, match="own factory"):
        config.load(None, [("objective", "name", objective, "--objective"),
                           ("data", "dataset", "mypkg.data:build", "--dataset"),
                           ("model", "name", "part_model", "--model")])


def test_cli_refuses_a_part_objective_on_digits_in_one_line(capsys):
    assert cli.main(["train", "--dataset", "digits", "--model", "part_model",
                     "--objective", "part_semi"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no part masks" in err


TINY = ["--epochs", "1", "--steps", "1", "--eps", "0.03",
        "--eval-samples", "8", "--eval-steps", "1", "--set", "run.progress=false"]


@pytest.mark.parametrize("objective", ["part_semi", "part_trades", "part_mat"])
def test_robustops_train_runs_each_part_objective_on_embedded_parts(objective, tmp_path,
                                                                    capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--dataset", "parts", "--model", "part_model", "--objective",
                     objective, "--set", "data.n_train=16", "--set", "data.n_test=8",
                     "--mask-fraction", "0.5", "--batch-size", "8", "--out", str(out), *TINY]) == 0
    stdout = capsys.readouterr().out
    metrics = json.loads(stdout[stdout.index("{"):stdout.rindex("}") + 1])  # the run's summary
    assert metrics["has_mask"] == pytest.approx(0.5)  # --mask-fraction reached the objective
    assert math.isfinite(metrics["loss"]) and 0 <= metrics["eval_clean"] <= 1
    assert (out / "model.safetensors").exists()
    saved = config.load(out / "config.toml")
    assert saved["objective"]["name"] == objective and saved["data"]["mask_fraction"] == 0.5


def test_robustops_train_runs_a_part_objective_on_a_part_imagenet_folder(tmp_path, capsys):
    pytest.importorskip("pycocotools")
    root = write_part_imagenet_folder(tmp_path / "pin")
    out = tmp_path / "run"
    assert cli.main(["train", "--dataset", "part_imagenet", "--data-root", str(root),
                     "--model", "part_model", "--objective", "part_mat", "--out", str(out),
                     "--batch-size", "2", *TINY]) == 0
    assert (out / "model.safetensors").exists()


def test_docs_config_names_every_registered_name_and_shipped_config():
    # docs/CONFIG.md is written by hand: a name added to a registry must be documented.
    doc = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "CONFIG.md").read_text()
    shipped = [p.stem for p in (pathlib.Path(robustops.__file__).parent / "configs").glob("*.toml")]
    names = [*DATASETS, *MODEL_FAMILIES, *OBJECTIVE_ENTRIES]
    missing = [n for n in names if f"`{n}`" not in doc] + [n for n in shipped if f"| {n} |" not in doc]
    assert not missing, f"docs/CONFIG.md does not mention {missing}"
