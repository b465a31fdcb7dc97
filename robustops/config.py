"""Config files for `robustops train` and `robustops eval`: TOML, checked against a schema.

A config has the sections [data], [model], [objective], [optim], [run] and [eval]
(SCHEMA lists every key with its type, range and default; docs/CONFIG.md documents
them). Every key is optional: a missing key takes its default; command-line flags
and `--set section.key=value` override the file. Unknown sections or keys, wrong
types and out-of-range values raise ConfigError naming the file, the section and
the key, with the closest valid names.

    cfg = load("robustops/configs/mnist_fast_at_small_cnn.toml", [("optim", "lr", "0.01", "--lr")])
    train, meta = build_dataset(cfg, "train")
    model, objective = build_model(cfg, meta), build_objective(cfg)

Shipped configs live in robustops/configs/ (`robustops configs` lists them); a
shipped config can be named without its folder or suffix.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import pathlib
import re
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: tomli is tomllib's original (install_requires has it)
    import tomli as tomllib

CONFIG_DIR = pathlib.Path(__file__).resolve().parent / "configs"

ATTACKS = ("pgd", "apgd", "pgd+apgd", "autoattack")


class ConfigError(ValueError):
    """A config file or command-line override that does not fit the schema."""


# The valid dataset, model and objective names are the registries' (one per kind:
# robustops/data/dataset_registry.py, robustops/models/registry.py,
# robustops/train/objective_registry.py), read when needed: a registered entry is valid
# here, listed by --help and built by the builders below, with nothing else to edit.
def _dataset_names() -> Tuple[str, ...]:
    from .data.dataset_registry import dataset_names

    return dataset_names()


def _model_names() -> Tuple[str, ...]:
    from .models.registry import model_names

    return model_names()


def _objective_names() -> Tuple[str, ...]:
    from .train.objective_registry import objective_names

    return objective_names()


def __getattr__(name: str):
    """DATASETS, MODELS and OBJECTIVES: the registered names, read live."""
    names = {"DATASETS": _dataset_names, "MODELS": _model_names,
             "OBJECTIVES": _objective_names}
    if name in names:
        return names[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclasses.dataclass(frozen=True)
class Key:
    """One config key: kind 'int' | 'float' | 'str' | 'bool' | 'path' | 'floats' (a list,
    or comma-separated text); default None means unset (TOML has no null: leave the key
    out); min (inclusive), above (exclusive), max; factory: a 'package.module:factory'
    (the user's own builder, robustops.user_code) is accepted besides the choices."""

    kind: str
    default: Any
    help: str
    choices: Union[Tuple[str, ...], Callable[[], Tuple[str, ...]], None] = None
    min: Optional[float] = None
    above: Optional[float] = None
    max: Optional[float] = None
    factory: bool = False

    def valid_choices(self) -> Tuple[str, ...]:
        return self.choices() if callable(self.choices) else (self.choices or ())

    def expected(self) -> str:
        """What a value must be, in words."""
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.valid_choices()) + (
                " or a package.module:factory of your own" if self.factory else "")
        words = {"int": "an integer", "float": "a number", "str": "a string",
                 "bool": "true or false", "path": "a path (string)",
                 "floats": "numbers, comma-separated or a list"}[self.kind]
        def num(v):
            return str(int(v)) if self.kind == "int" else f"{v:g}"

        bounds = [f">= {num(self.min)}" if self.min is not None else "",
                  f"> {num(self.above)}" if self.above is not None else "",
                  f"<= {num(self.max)}" if self.max is not None else ""]
        bounds = [b for b in bounds if b]
        return words + (" " + " and ".join(bounds) if bounds else "")


SCHEMA: Dict[str, Dict[str, Key]] = {
    "data": {
        "dataset": Key("str", "mnist", "a registered dataset (robustops.data.dataset_registry; "
                       "root names the folder of those read from one), or your own "
                       "package.module:factory (called with split='test' if it takes split) "
                       "returning a Dataset, DataLoader or (x, y) tensors",
                       choices=_dataset_names, factory=True),
        "image_key": Key("str", None, "dict samples: the image's key (default: the first of "
                         "image, images, img, pixel_values, input, inputs, x)"),
        "label_key": Key("str", None, "dict samples: the label's key (default: the first of "
                         "label, labels, target, targets, y)"),
        "root": Key("path", None, "folder of a dataset read from one (image_folder, cifar, idx, "
                    "part_imagenet; relative paths: from the current directory)"),
        "train_dir": Key("str", "train", "image_folder: sub-folder of root with the training "
                         "images, laid out <class>/<image>"),
        "test_dir": Key("str", "test", "image_folder: sub-folder of root with the test images"),
        "image_size": Key("int", None, "shapes, parts: rendered side; image_folder, "
                          "part_imagenet: resized side (default 32; not used by the others)",
                          min=16),
        "n_train": Key("int", 4000, "shapes, parts: number of training images", min=1),
        "n_test": Key("int", 1000, "shapes, parts: number of test images", min=1),
        "mask_fraction": Key("float", None, "parts: share of the training images that keep "
                             "their part mask for the part objectives (the rest have none: "
                             "semi-supervised; default 1)", min=0, max=1),
    },
    "model": {
        "name": Key("str", "small_cnn", "model family, or your own package.module:factory "
                    "(called with num_classes if it takes it)", choices=_model_names,
                    factory=True),
        "stem": Key("str", "auto", "input stem of the torchvision families: small (3x3 "
                    "stride 1, no max-pool: CIFAR), imagenet (torchvision's), auto (small for "
                    "images <= 64 px)", choices=("auto", "small", "imagenet")),
        "mean": Key("floats", None, "per-channel mean the model expects (e.g. "
                    "0.4914,0.4822,0.4465); train and eval wrap the model in "
                    "robustops.nn.Normalize, so it trains and is attacked on [0, 1] pixels "
                    "(needs std)"),
        "std": Key("floats", None, "per-channel std the model expects (needs mean)"),
    },
    "objective": {
        "name": Key("str", "fast_at", "training objective (robustops.train.objective_registry; "
                    "part_semi, part_trades and part_mat train model part_model on a dataset "
                    "with part masks)", choices=_objective_names),
        "eps": Key("float", 0.1, "attack radius of adversarial training (also of the "
                   "evaluation unless [eval] eps is set)", min=0),
        "steps": Key("int", 10, "attack steps of the adversarial objectives", min=1),
        "alpha": Key("float", None, "attack step size (default: the objective's rule)", above=0),
        "beta": Key("float", None, "trades, part_trades: weight of the KL term (default 6); "
                    "ig_norm / ig_sum_norm / cacr_wacr: weight of the IG norm (default 1); mat, "
                    "part_mat: weight of the adversarial term, in [0, 1] (default 0.5)", min=0),
        "seg_weight": Key("float", None, "part_semi / part_trades / part_mat: weight c of "
                          "the segmentation loss (default 0.5)", min=0, max=1),
        "replays": Key("int", 4, "free_at replays of each batch", min=1),
        "layer": Key("str", None, "tenet / tenet_free_at: the named layer to inhibit "
                     "(default: the model's, checked when the run starts: resnext29 stage2, "
                     "resnet18 / resnet50 layer2, small_cnn features.4, alexnet features.5, "
                     "googlenet inception3b)"),
    },
    "optim": {
        "optimizer": Key("str", "adamw", "optimizer", choices=("sgd", "adamw")),
        "lr": Key("float", 2e-3, "peak learning rate", above=0),
        "weight_decay": Key("float", 1e-4, "weight decay", min=0),
        "schedule": Key("str", "onecycle", "learning-rate schedule",
                        choices=("constant", "cosine", "step", "onecycle")),
        "warmup": Key("float", 0.2, "fraction of training spent warming up", min=0, max=1),
        "epochs": Key("int", 20, "training epochs", min=1),
        "batch_size": Key("int", 64, "batch size per process", min=1),
        "grad_clip": Key("float", None, "clip the gradient norm to this (default: no clipping)",
                         above=0),
    },
    "run": {
        "out": Key("path", "runs/train", "run folder: checkpoints/, metrics.jsonl, "
                   "model.safetensors, config.toml"),
        "seed": Key("int", 0, "seed of the data split, initialisation, data order and attacks",
                    min=0, max=2 ** 63 - 1),  # torch takes 64 bits; seed + epoch must fit
        "device": Key("str", "cpu", "cpu, cuda (cuda:LOCAL_RANK under torchrun) or auto "
                      "(cuda when available)", choices=("cpu", "cuda", "auto")),
        "autocast": Key("str", None, "mixed precision (default: off)", choices=("bf16", "fp16")),
        "channels_last": Key("bool", False, "train in channels_last layout"),
        "compile": Key("bool", False, "torch.compile the model"),
        "checkpoint_every": Key("int", 200, "steps between checkpoints (and one at each epoch "
                                "end)", min=1),
        "eval_every": Key("int", 5, "epochs between evaluations (and one after the last)", min=1),
        "progress": Key("bool", True, "progress bars"),
        "tensorboard": Key("path", None, "also write the logged metrics as TensorBoard events "
                           "to this folder (needs `pip install tensorboard`)"),
    },
    "eval": {
        "attack": Key("str", "pgd", "attacks of the evaluation", choices=ATTACKS),
        "eps": Key("float", None, "attack radius (default: [objective] eps)", min=0),
        "norm": Key("str", "linf", "threat model", choices=("linf", "l2")),
        "steps": Key("int", 20, "attack steps", min=1),
        "restarts": Key("int", 1, "random restarts of PGD", min=1),
        "samples": Key("int", 1000, "test images evaluated (the first ones; a random subset "
                       "of an image_folder)", min=1),
        "batch_size": Key("int", 256, "evaluation batch size (not per process: batches are "
                          "shared out among processes)", min=1),
        "weights": Key("path", None, "weights to evaluate (default: <run.out>/model.safetensors)"),
        "json": Key("path", None, "also write the results to this JSON file"),
        "report": Key("path", None, "also write a report folder: report.md with the robust "
                      "accuracy and the robustness curve (accuracy against eps, a table and "
                      "robustness_curve.png)"),
        "curve_eps": Key("floats", None, "eps values of the report's robustness curve, "
                         "increasing, e.g. 0,2/255,4/255,8/255 (default: 0, 1/4, 1/2, 3/4, 1, "
                         "3/2 and 2 times [eval] eps)"),
    },
}

FRACTION = re.compile(r"^\s*([0-9.eE+-]+)\s*/\s*([0-9.eE+-]+)\s*$")  # "8/255"
_FRACTION = FRACTION


def _suggest(word: str, names: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(names), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _where(origin: str, section: str, key: str) -> str:
    return f"{origin}: [{section}] {key}"


def _convert(key: Key, value: Any, where: str, from_text: bool) -> Any:
    """value checked against key (command-line text parsed first when from_text)."""
    def bad(what: str):
        return ConfigError(f"{where} must be {key.expected()}, got {value!r}{what}")

    kind = key.kind
    if kind == "floats":
        return _floats(value, bad)
    if from_text and kind != "str" and kind != "path":
        text = value.strip()
        if kind == "bool":
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise bad("")
            value = text.lower() in ("true", "1", "yes")
        elif kind == "int":
            try:
                value = int(text)
            except ValueError:
                raise bad("") from None
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad(f" ({type(value).__name__})")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad(f" ({type(value).__name__})")
    elif kind == "float":
        if isinstance(value, str):  # "8/255" (TOML has no expressions), or text from a flag
            m = _FRACTION.match(value)
            try:
                value = float(m.group(1)) / float(m.group(2)) if m else float(value)
            except (ValueError, ZeroDivisionError):
                raise bad(" (a string that is neither a number nor a fraction like '8/255')") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad(f" ({type(value).__name__})" if not isinstance(value, (int, float)) else "")
        value = float(value)
    else:  # str, path
        if not isinstance(value, str):
            raise bad(f" ({type(value).__name__})")
        if kind == "path" and not value.strip():
            raise ConfigError(f"{where} must be a non-empty path")
        if key.factory and ":" in value:
            from .user_code import is_factory_spec

            if not is_factory_spec(value):
                raise ConfigError(f"{where} must be {key.expected()}, got {value!r} (a "
                                  "factory is named package.module:function)")
            return value
        if key.choices and value not in key.valid_choices():
            raise ConfigError(f"{where} must be {key.expected()}, got {value!r}"
                              + _suggest(value, key.valid_choices()))
        return value
    if ((key.min is not None and value < key.min) or (key.above is not None and value <= key.above)
            or (key.max is not None and value > key.max)):
        raise bad("")
    return value


def _floats(value: Any, bad) -> List[float]:
    """[float, ...] from '0.5,0.25' text or a list of numbers (fractions like '8/255' too)."""
    items = value.split(",") if isinstance(value, str) else value
    if isinstance(items, (int, float)) and not isinstance(items, bool):
        items = [items]  # one number (--set model.mean=0.5, mean = 0.5): one for all channels
    if not isinstance(items, (list, tuple)) or not items:
        raise bad(f" ({type(value).__name__})")
    out = []
    for it in items:
        if isinstance(it, str):
            m = _FRACTION.match(it)
            try:
                it = float(m.group(1)) / float(m.group(2)) if m else float(it)
            except (ValueError, ZeroDivisionError):
                raise bad("") from None
        if isinstance(it, bool) or not isinstance(it, (int, float)) or not math.isfinite(it):
            raise bad("")
        out.append(float(it))
    return out


def _check_file(doc: Dict[str, Any], origin: str) -> Dict[str, Dict[str, Any]]:
    """The {section: {key: value}} a parsed TOML document sets, checked against SCHEMA."""
    out: Dict[str, Dict[str, Any]] = {}
    for section, table in doc.items():
        if section not in SCHEMA and not isinstance(table, dict):
            owners = [s for s, keys in SCHEMA.items() if section in keys]
            hint = f"put it under [{owners[0]}]" if owners else (
                "valid keys: " + ", ".join(dotted_keys()))
            raise ConfigError(f"{origin}: key {section!r} is outside any section; {hint}")
        if section not in SCHEMA:
            raise ConfigError(f"{origin}: unknown section [{section}]"
                              + _suggest(section, SCHEMA)
                              + f" (valid sections: {', '.join(SCHEMA)})")
        if not isinstance(table, dict):
            raise ConfigError(f"{origin}: [{section}] must be a section (a TOML table), got "
                              f"{table!r}")
        keys = SCHEMA[section]
        for name, value in table.items():
            if name not in keys:
                owners = [s for s, ks in SCHEMA.items() if name in ks]
                hint = (f"; {name!r} belongs in section [{owners[0]}]" if owners
                        else _suggest(name, keys))
                raise ConfigError(f"{origin}: unknown key {name!r} in section [{section}]{hint} "
                                  f"(valid keys of [{section}]: {', '.join(keys)})")
            out.setdefault(section, {})[name] = _convert(keys[name], value,
                                                         _where(origin, section, name), False)
    return out


def find(name_or_path: Union[str, os.PathLike]) -> pathlib.Path:
    """A config file: a path, or the name of a shipped config (with or without .toml)."""
    path = pathlib.Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (CONFIG_DIR / path.name, CONFIG_DIR / (path.name + ".toml")):
        if path.parent == pathlib.Path(".") and candidate.is_file():
            return candidate
    raise ConfigError(f"config file {name_or_path} does not exist and is not a shipped config"
                      + _suggest(path.stem, shipped()) + " (`robustops configs` lists them)")


def shipped() -> List[str]:
    """Names of the configs shipped in robustops/configs/."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def describe(path: pathlib.Path) -> str:
    """The first sentence of a config file's leading comment (its description)."""
    words = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        words.append(line.lstrip("#").strip())
    text = " ".join(words)
    return text.split(". ")[0].rstrip(".")


class Config(dict):
    """{section: {key: value}} with every key of SCHEMA present (None: unset);
    `source` says where it came from."""

    source: str = "defaults"


def _origin(cfg: Config) -> str:
    """'<config file>: ' to start a message with, or nothing when no file was read."""
    return "" if cfg.source == "defaults" else f"{cfg.source}: "


def load(path: Union[None, str, os.PathLike] = None,
         overrides: Iterable[Tuple[str, str, Any, str]] = (), *, text: bool = True) -> Config:
    """Defaults, then the file at `path` (a path or a shipped config name; None: no file),
    then `overrides`: (section, key, value, origin) such as ("optim", "lr", "0.01", "--lr"),
    values given as command-line text when text=True. Derived defaults are filled in:
    [eval] eps from [objective] eps, [eval] weights from [run] out."""
    cfg = Config({s: {k: key.default for k, key in keys.items()} for s, keys in SCHEMA.items()})
    if path is not None:
        file = find(path)
        try:
            doc = tomllib.loads(file.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{file}: not UTF-8 text (byte {exc.start}: "
                              f"{exc.object[exc.start:exc.start + 1]!r}); TOML files are "
                              "UTF-8") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML ({exc})") from None
        except OSError as exc:
            raise ConfigError(f"{file}: cannot read it ({exc.strerror or exc})") from None
        for section, values in _check_file(doc, str(file)).items():
            cfg[section].update(values)
        cfg.source = str(file)
    for section, key, value, origin in overrides:
        if section not in SCHEMA or key not in SCHEMA[section]:
            raise ConfigError(f"{origin}: unknown key [{section}] {key}"
                              + _suggest(f"{section}.{key}", dotted_keys()))
        cfg[section][key] = _convert(SCHEMA[section][key], value, f"{origin} ([{section}] {key})",
                                     text and isinstance(value, str))
    _check_registered(cfg)
    if cfg["eval"]["eps"] is None:
        cfg["eval"]["eps"] = cfg["objective"]["eps"]
    if cfg["eval"]["weights"] is None:
        cfg["eval"]["weights"] = str(pathlib.Path(cfg["run"]["out"]) / "model.safetensors")
    return cfg


def _check_registered(cfg: Config) -> None:
    """What the registry entries of [data] dataset, [model] name and [objective] name
    imply: a root for folder datasets, beta's default and range, TENET's default layer,
    and part masks for the part objectives and the part model (ConfigError otherwise).
    The objective's defaults are filled in."""
    from .data.dataset_registry import DATASETS, part_dataset_names
    from .models.registry import MODEL_FAMILIES
    from .train.objective_registry import OBJECTIVE_ENTRIES

    d, m, obj = cfg["data"]["dataset"], cfg["model"]["name"], cfg["objective"]
    dataset, family = DATASETS.get(d), MODEL_FAMILIES.get(m)  # None: the user's factory
    entry = OBJECTIVE_ENTRIES[obj["name"]]
    origin = _origin(cfg)
    if dataset is not None and dataset.needs_root and cfg["data"]["root"] is None:
        raise ConfigError(f"{origin}[data] root is required for dataset {d!r}: the folder "
                          "holding the data (set it in the config, or pass --data-root)")
    if entry.beta_max is not None and obj["beta"] is not None and obj["beta"] > entry.beta_max:
        raise ConfigError(f"{origin}[objective] beta must be in [0, {entry.beta_max:g}] for "
                          f"{entry.name} (the weight of the adversarial term), got "
                          f"{obj['beta']!r}")
    if obj["beta"] is None:
        obj["beta"] = entry.beta if entry.beta is not None else 6.0  # 6: unread by the others
    if obj["seg_weight"] is None:
        obj["seg_weight"] = 0.5
    if obj["layer"] is None:
        obj["layer"] = family.tenet_layer if family is not None else None
        if obj["layer"] is None and entry.needs_layer:
            raise ConfigError(f"{origin}[objective] layer is required for objective "
                              f"{entry.name!r} with model {m!r} (it has no default): name the "
                              "feature map to inhibit, e.g. --layer features.4")
    with_parts = ", ".join(part_dataset_names())
    if entry.needs_parts and (dataset is None or not dataset.has_parts):
        what = ("is your own factory; the part objectives read the registered datasets with "
                "part masks (register yours: robustops.data.dataset_registry.register_dataset "
                "with has_parts=True)" if dataset is None else "has no part masks")
        raise ConfigError(f"{origin}[objective] name {entry.name!r} trains on part masks, and "
                          f"dataset {d!r} {what}: use a dataset with part masks "
                          f"({with_parts}; --dataset)")
    if entry.needs_parts and family is not None and not family.part_model:
        parts = ", ".join(n for n, f in MODEL_FAMILIES.items() if f.part_model)
        raise ConfigError(f"{origin}[objective] name {entry.name!r} trains a part model "
                          f"(class and part logits), and model {m!r} is not one: use "
                          f"--model {parts} (or your own factory building a "
                          "robustops.models.PartModel)")
    if family is not None and family.part_model and dataset is not None \
            and not dataset.has_parts:
        raise ConfigError(f"{origin}[model] name {m!r} needs a dataset with part masks (its "
                          f"segmenter is sized by the number of parts), and dataset {d!r} has "
                          f"none: use {with_parts} (--dataset)")


def dotted_keys() -> List[str]:
    return [f"{s}.{k}" for s, keys in SCHEMA.items() for k in keys]


def parse_set(item: str) -> Tuple[str, str, Any, str]:
    """`section.key=value` (value in TOML syntax, or bare text) -> an override for load()."""
    origin = f"--set {item}"
    name, sep, raw = item.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot:
        raise ConfigError(f"{origin}: expected section.key=value, e.g. optim.lr=0.01")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # bare text: a string, or a number/bool parsed by the schema
    return section, key.strip(), value, origin


def dumps(cfg: Config) -> str:
    """cfg as TOML (unset keys left out): load(dumps(cfg)) gives cfg back."""
    import json

    lines = []
    for section, values in cfg.items():
        lines.append(f"[{section}]")
        for k, v in values.items():
            if v is not None:
                lines.append(f"{k} = {str(v).lower() if isinstance(v, bool) else json.dumps(v)}")
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- builders


def build_dataset(cfg: Config, split: str):
    """(dataset, {'in_channels', 'image_size', 'num_classes'[, 'num_parts']}) for split
    'train' | 'test' of [data]: samples (x, y, ...), or (x, packed part targets) for the
    training split of a part objective (robustops.data.dataset_registry)."""
    from .data.dataset_registry import DATASETS
    from .train.objective_registry import OBJECTIVE_ENTRIES

    data = cfg["data"]
    name = data["dataset"]
    if ":" in name:
        return _user_dataset(cfg, split)
    entry = DATASETS[name]
    if entry.needs_root:
        root = pathlib.Path(data["root"])
        if not root.is_dir():
            raise ConfigError(f"{_origin(cfg)}[data] root {str(root)!r} "
                              + ("is not a folder" if root.exists() else "does not exist")
                              + f" (the folder holding the {name} data; --data-root sets it)")
    parts = split == "train" and OBJECTIVE_ENTRIES[cfg["objective"]["name"]].needs_parts
    return entry.build(data, split, cfg["run"]["seed"], parts)


def _user_dataset(cfg: Config, split: str):
    """The user's dataset factory's data, seen as (x, y) samples or batches, and its meta
    (channels and side from the first sample; classes from its `classes` / `num_classes`,
    or from the labels of (x, y) tensors; None when it has neither)."""
    from .data.batches import image_label_view, num_samples, take
    from .user_code import build_user_dataset

    d = cfg["data"]
    try:
        data = build_user_dataset(d["dataset"], split)
        view = image_label_view(data, d["image_key"], d["label_key"])
        x, y = take(view, 0, 1) if num_samples(view) else next(iter(view))
    except StopIteration:
        raise ConfigError(f"{_origin(cfg)}[data] dataset {d['dataset']!r} gave no samples") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{_origin(cfg)}[data] dataset: {exc}") from None
    if x.ndim != 4:
        raise ConfigError(f"{_origin(cfg)}[data] dataset {d['dataset']!r}: images must be "
                          f"(C, H, W), got a batch of shape {tuple(x.shape)}")
    owner = getattr(data, "dataset", data)  # a DataLoader's dataset
    classes = getattr(owner, "num_classes", None)
    if classes is None and hasattr(owner, "classes"):
        classes = len(owner.classes)
    if classes is None and isinstance(data, tuple):
        classes = int(data[1].max()) + 1
    return view, {"in_channels": x.shape[1], "image_size": x.shape[-1], "num_classes": classes}


def build_model(cfg: Config, meta: Dict[str, int]):
    """The [model]: a family sized by meta (its stem per [model] stem), or the model that
    the user's package.module:factory builds (with num_classes if it takes it)."""
    from . import recipes

    name = cfg["model"]["name"]
    if ":" in name:
        from .user_code import build_user_model

        if cfg["model"]["stem"] != "auto":
            raise ConfigError(f"{_origin(cfg)}[model] stem applies to the shipped families; "
                              f"{name!r} builds its own stem: leave stem at 'auto'")
        try:
            return build_user_model(name, meta.get("num_classes"))
        except ValueError as exc:
            raise ConfigError(f"{_origin(cfg)}[model] name: {exc}") from None
    if meta.get("num_classes") is None:
        raise ConfigError(f"{_origin(cfg)}[model] {name!r} needs the number of classes, and "
                          f"dataset {cfg['data']['dataset']!r} does not say it: give the "
                          "dataset a `classes` list or a `num_classes`, or use your own model "
                          "(--model package.module:factory)")
    from .models.registry import MODEL_FAMILIES

    family, stem = MODEL_FAMILIES[name], cfg["model"]["stem"]
    if stem not in family.stems:
        raise ConfigError(f"{_origin(cfg)}[model] stem: {name} has only its own stem; leave "
                          "stem at 'auto'")
    if family.part_model and meta.get("num_parts") is None:
        raise ConfigError(f"{_origin(cfg)}[model] {name!r} needs a dataset with part masks, "
                          f"and dataset {cfg['data']['dataset']!r} does not give a number of "
                          "parts")
    return recipes.model(name, meta, stem=stem)


def normalization(cfg: Config, channels: Optional[int] = None):
    """([model] mean, [model] std) lists when set (the model expects normalised inputs),
    else None; ConfigError when only one is set, or (given the data's channels) when
    they hold neither one value per channel nor one value for all."""
    m = cfg["model"]
    if (m["mean"] is None) != (m["std"] is None):
        missing = "std" if m["std"] is None else "mean"
        raise ConfigError(f"{_origin(cfg)}[model] {missing} is required with "
                          f"{'mean' if missing == 'std' else 'std'} (--mean and --std go "
                          "together)")
    if m["mean"] is None:
        return None
    for k in ("mean", "std"):
        if channels is not None and len(m[k]) not in (1, channels):
            raise ConfigError(f"{_origin(cfg)}[model] {k} has {len(m[k])} values but the "
                              f"images have {channels} channels: give one per channel")
    return m["mean"], m["std"]


def build_objective(cfg: Config, model=None, example=None):
    """The [objective]; with `model` (and `example`, an input batch such as one training
    image (1, C, H, W)), it is checked against that model now, so that a wrong [objective]
    layer fails when the run starts, not at TENET's first inhibition step (iteration 500)."""
    from . import recipes

    o = cfg["objective"]
    objective = recipes.objective(o["name"], o["eps"], o["steps"], o["alpha"], o["beta"],
                                  o["replays"], cfg["run"]["seed"], layer=o["layer"],
                                  seg_weight=o["seg_weight"])
    if model is not None and hasattr(objective, "check_model"):
        try:
            objective.check_model(model, example)
        except ValueError as exc:
            msg = str(exc).removeprefix("GroupInhibition: ").removeprefix("TenetObjective: ")
            raise ConfigError(f"{_origin(cfg)}[objective] layer {o['layer']!r} does not fit "
                              f"model {cfg['model']['name']!r}: {msg}") from None
    return objective


def normalized_model(cfg: Config, model, channels: Optional[int] = None):
    """`model` wrapped in robustops.nn.Normalize when [model] mean/std are set (the model
    expects normalised inputs), else `model` itself. The attacks of training ([objective])
    and evaluation ([eval]) then work on [0, 1] pixels: eps, projections and clamps in pixel
    units, the model fed (x - mean) / std. channels: the images' (checked against mean/std)."""
    norm = normalization(cfg, channels)
    if norm is None:
        return model
    from .nn.normalize import normalized

    try:
        return normalized(model, *norm)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{_origin(cfg)}[model] mean/std: {exc}") from None


def build_attacks(cfg: Config, model):
    """The [eval] attacks of `model` (wrapped by normalized_model where [model] mean/std say
    the model expects normalised inputs), keyed by name."""
    from . import recipes

    e = cfg["eval"]
    return recipes.attacks(model, e["eps"], e["steps"], e["restarts"], e["norm"], e["attack"],
                           cfg["run"]["seed"])


def curve_eps(cfg: Config) -> List[float]:
    """The eps values of the report's robustness curve: [eval] curve_eps, else multiples of
    [eval] eps (robustops.eval.robustness_curve.DEFAULT_EPS_MULTIPLES)."""
    from .eval.robustness_curve import default_curve_eps

    e = cfg["eval"]
    values = e["curve_eps"] if e["curve_eps"] is not None else default_curve_eps(e["eps"])
    if any(b <= a for a, b in zip(values, values[1:])) or min(values) < 0:
        raise ConfigError(f"{_origin(cfg)}[eval] curve_eps must be increasing values >= 0, "
                          f"got {values}")
    return list(values)


def build_curve_attacks(cfg: Config, model):
    """The attacks of the robustness curve: the [eval] attacks, each run at every eps at
    once (robust_mask_multi_eps); AutoAttack, whose suite is built around one eps, is drawn
    as its first attack, APGD-CE with 100 steps."""
    from . import recipes

    e = cfg["eval"]
    which = "+".join("apgd" if w == "autoattack" else w for w in e["attack"].split("+"))
    steps = 100 if e["attack"] == "autoattack" else e["steps"]
    return recipes.attacks(model, e["eps"], steps, e["restarts"], e["norm"], which,
                           cfg["run"]["seed"])


def eval_data(cfg: Config, test):
    """The test samples the evaluation attacks: the first [eval] samples (a seeded random
    subset of an image folder, whose files are sorted by class)."""
    from torch.utils.data import Subset

    from .data.batches import num_samples

    if num_samples(test) is None:  # a loader or stream: robust_accuracy's max_samples cuts it
        return test
    n = min(cfg["eval"]["samples"], len(test))
    if n == len(test):
        return test
    if cfg["data"]["dataset"] == "image_folder":
        import torch

        gen = torch.Generator().manual_seed(cfg["run"]["seed"])
        return Subset(test, sorted(torch.randperm(len(test), generator=gen)[:n].tolist()))
    return Subset(test, range(n))


def device(cfg: Config):
    """The torch.device of [run] device (cuda:LOCAL_RANK under torchrun)."""
    import torch

    want = cfg["run"]["device"]
    if want == "cpu" or (want == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"{_origin(cfg)}[run] device is 'cuda' but no GPU is visible; use "
                          "'cpu' or 'auto'")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
