"""TENET vs plain training (METHODS.md section 2; issue 6) on the embedded `shapes`, 32 px.

Four runs of one small ResNeXt-29 (width-scaled for CPUs): plain cross-entropy and the
TENET objective (CE steps plus group-wise inhibition steps on the stage-2 feature map),
each on the full training set and on its first 10% (the low-data setting, trained for
more epochs). Every run is measured on clean test images and under the common
corruptions (19 types x 5 severities); out_dir/report.md holds the numbers and a bar
plot, out_dir/results.json the same numbers.

Resumable: each run has its own Trainer folder (out_dir/<run>/: checkpoints, metrics,
weights) and, once evaluated, out_dir/<run>/eval.json; a rerun skips finished runs and
resumes an interrupted one. out_dir/<run>/config.json records the run's settings: a rerun
with other settings in the same out_dir is refused (use another out_dir).

Optimiser as in the paper's CIFAR setup (SGD, Nesterov momentum 0.9, weight decay 5e-4,
cosine LR); TENET's inhibition steps start after the first `tenet_start` of the run's
iterations (the paper: iteration 500 of ~39,000, when the network already classifies a
good share of the batch) and then come every 3rd iteration with the paper's weights
(0.1 CE + 1e-3 L_orth, K = 6 groups).
"""
from __future__ import annotations

import json
import os
import pathlib
import time
from typing import Dict, Optional, Sequence

import torch
from torch.utils.data import Subset

from ..data.to_device import to_device
from ..eval.accuracy import accuracy
from ..eval.corruption_benchmark import CorruptionAccuracy, corruption_accuracy
from ..eval.corruptions import CORRUPTIONS, corruption_sources
from ..eval.report import Report, plot_bars, plot_corruption_accuracy
from ..models.resnext import TENET_LAYER, resnext29
from ..train import CrossEntropy, TenetObjective, Trainer

# (run name, objective, low-data?)
RUNS = (("ce_full", "ce", False), ("tenet_full", "tenet", False),
        ("ce_10pct", "ce", True), ("tenet_10pct", "tenet", True))
# Sizes: the study's (estimated 11-12 minutes on 2 idle CPU cores: ~10 of training, ~1 of
# evaluation), `robustops quickstart`'s (~1.5 minutes) and a smoke test's.
SIZES = {"full": dict(n_train=4000, n_test=1000, epochs=28, corruption_samples=256),
         "quick": dict(n_train=2000, n_test=500, epochs=6, corruption_samples=96),
         "tiny": dict(n_train=128, n_test=32, epochs=1, corruption_samples=8)}


def _write_json(path: pathlib.Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)  # atomic: a killed run never leaves half a file


def _check_config(folder: pathlib.Path, cfg: dict) -> None:
    path = folder / "config.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old != cfg:
            diff = {k: (old.get(k), v) for k, v in cfg.items() if old.get(k) != v}
            raise ValueError(f"{folder} holds a run with other settings {diff} (was, now); "
                             "use another out_dir or delete that folder")
        return
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(path, cfg)


def run(out_dir: os.PathLike, *, n_train: Optional[int] = None, n_test: Optional[int] = None,
        epochs: Optional[int] = None, corruption_samples: Optional[int] = None,
        quick: bool = False, tiny: bool = False, low_data_fraction: float = 0.1,
        low_data_epochs: Optional[int] = None, batch_size: int = 64, lr: float = 0.05,
        tenet_start: float = 0.2, num_groups: int = 6, widen_factor: float = 0.25,
        stem_width: int = 16, seed: int = 0, image_size: int = 32, progress: bool = True,
        device: Optional[str] = None,
        corruptions: Optional[Sequence[str]] = None) -> Dict[str, dict]:
    """Train the four runs (resumable), evaluate them, write report.md and results.json.

    n_train / n_test (`shapes` images), epochs (full-data runs) and corruption_samples
    (test images under each corruption and severity) default to SIZES["full"] (4000, 1000,
    28, 256), or SIZES["quick"] / SIZES["tiny"] with quick / tiny. The low-data runs use
    the first low_data_fraction * n_train training images (at least one batch) for
    low_data_epochs (default 3 * epochs). widen_factor / stem_width: the width scaling of
    the ResNeXt-29 2x8d. corruptions: default all 19.
    """
    from ..data.shapes import make_shapes

    size = SIZES["tiny" if tiny else "quick" if quick else "full"]
    n_train, n_test, epochs, corruption_samples = (
        size[k] if v is None else v for k, v in (("n_train", n_train), ("n_test", n_test),
                                                ("epochs", epochs),
                                                ("corruption_samples", corruption_samples)))
    if not 0 < low_data_fraction <= 1 or not 0 <= tenet_start < 1:
        raise ValueError("need 0 < low_data_fraction <= 1 and 0 <= tenet_start < 1")
    low_data_epochs = low_data_epochs or 3 * epochs
    n_low = min(n_train, max(batch_size, round(low_data_fraction * n_train)))
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = to_device(make_shapes(n_train, split="train", image_size=image_size, seed=seed),
                      device)
    test = to_device(make_shapes(n_test, split="test", image_size=image_size, seed=seed),
                     device)
    k = len(train.class_names)
    n_c = min(corruption_samples, n_test)
    corruption_names = list(corruptions or CORRUPTIONS)
    corruption_sources(corruption_names)  # no frost photos: fail now, not after training
    shared = dict(n_test=n_test, batch_size=batch_size, lr=lr, num_groups=num_groups,
                  widen_factor=widen_factor, stem_width=stem_width, seed=seed,
                  image_size=image_size, corruption_samples=n_c,
                  corruptions=corruption_names)

    results: Dict[str, dict] = {}
    corr: Dict[str, CorruptionAccuracy] = {}
    for name, kind, low in RUNS:
        n, ep = (n_low, low_data_epochs) if low else (n_train, epochs)
        steps = ep * (n // batch_size)
        warm = max(1, round(tenet_start * steps))
        cfg = dict(shared, objective=kind, n_train=n, epochs=ep,
                   **({"tenet_warmup_iters": warm} if kind == "tenet" else {}))
        folder = out / name
        _check_config(folder, cfg)
        done = folder / "eval.json"
        if done.exists():  # trained and evaluated by an earlier call
            saved = json.loads(done.read_text())
            results[name], corr[name] = saved["result"], CorruptionAccuracy(**saved["corruption"])
            continue
        torch.manual_seed(seed)
        model = resnext29(k, widen_factor=widen_factor, stem_width=stem_width)
        objective = (TenetObjective(TENET_LAYER, num_groups=num_groups, warmup_iters=warm,
                                    seed=seed) if kind == "tenet" else CrossEntropy())
        data = train if n == n_train else Subset(train, range(n))
        t0 = time.perf_counter()
        Trainer(model, objective, data, batch_size=batch_size, epochs=ep, lr=lr,
                out_dir=folder, seed=seed, progress=progress, device=device).fit()
        seconds = time.perf_counter() - t0
        if isinstance(objective, TenetObjective):
            objective.close()
        corr[name] = corruption_accuracy(model, (test.images[:n_c], test.shape_labels[:n_c]),
                                         corruptions=corruption_names, seed=seed,
                                         progress=progress)
        results[name] = {
            "objective": kind, "n_train": n, "epochs": ep,
            "clean_accuracy": accuracy(model, test.images, test.shape_labels),
            "corruption_mean_accuracy": corr[name].mean(),
            "n_test": n_test, "n_corruption": corr[name].n, "num_classes": k,
            "corruption_per_type": {c: sum(v) / len(v) for c, v in corr[name].accuracy.items()},
            "train_seconds": round(seconds, 1),  # this call's (a resumed run: its last part)
        }
        _write_json(done, {"result": results[name], "corruption": corr[name].to_dict()})

    _write_report(out, results, corr, n_train, n_low, epochs, low_data_epochs, tenet_start,
                  n_test, k)
    _write_json(out / "results.json", results)
    return results


def _write_report(out, results, corr, n_train, n_low, epochs, low_epochs, tenet_start, n_test,
                  num_classes):
    r = Report(out, "TENET (group-wise inhibition) vs plain training (embedded `shapes`, 32 px)")
    n_c = next(iter(corr.values())).n
    r.text(f"ResNeXt-29 (2x8d, width-scaled), trained with cross-entropy (`ce`) or with "
           f"TENET (`tenet`: CE steps, and from {tenet_start:.0%} of the iterations on, "
           "every 3rd iteration an extra step on 0.1 CE(inhibited) + 1e-3 L_orth over the "
           f"correctly classified samples; K = 6 groups on the `{TENET_LAYER}` output). "
           f"Full data: {n_train} images, {epochs} epochs; low data (`10pct`): the first "
           f"{n_low} images, {low_epochs} epochs. SGD (Nesterov 0.9, wd 5e-4, cosine LR).")
    pairs = (("full", "ce_full", "tenet_full"), ("10%", "ce_10pct", "tenet_10pct"))
    headers = [""] + [f"{who} ({data})" for data, _, _ in pairs
                      for who in ("CE", "TENET", "TENET - CE")]

    def row(label, value):  # CE, TENET and their difference, full then low data
        cells = [label]
        for _, ce, te in pairs:
            cells += [value(ce), value(te), value(te) - value(ce)]
        return cells

    r.heading("Summary").table(headers, [
        row(label, lambda n, key=key: results[n][key]) for label, key in (
            ("clean accuracy", "clean_accuracy"),
            ("mean corruption accuracy", "corruption_mean_accuracy"),
            ("training seconds", "train_seconds"))],
        n={"test images": n_test, "images per corruption": n_c})
    r.chance_warnings({n: results[n]["clean_accuracy"] for n in results}, n=n_test,
                      num_classes=num_classes)
    r.figure(plot_bars({n: results[n]["clean_accuracy"] for n in results}, "clean accuracy",
                       "Clean accuracy", chance=1 / num_classes, n=n_test), "clean_accuracy")
    r.figure(plot_bars({n: results[n]["corruption_mean_accuracy"] for n in results},
                       "mean corruption accuracy",
                       "Mean accuracy over corruptions and severities",
                       chance=1 / num_classes, n=n_c), "corruption_mean")
    r.heading("Accuracy per corruption (mean over severities)").table(headers, [
        row(c, lambda n, c=c: results[n]["corruption_per_type"][c])
        for c in results["ce_full"]["corruption_per_type"]], n=n_c)
    r.corruption_sources(corr)
    r.figure(plot_corruption_accuracy(corr, chance=1 / num_classes), "corruptions",
             "accuracy per corruption and severity")
    r.write()
