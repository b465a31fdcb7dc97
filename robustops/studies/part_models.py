"""Part-based model vs a plain CNN of similar size (METHODS.md section 1) on the embedded `parts`.

Two models learn the 5 `parts` classes: a part model (small encoder-decoder segmenter ->
weighted-bbox head, trained with the semi-supervised loss on the part masks) and a
SmallCNN with about as many parameters (cross-entropy). Each is trained clean, then
adversarially from its clean weights (METHODS.md: L-inf PGD, the attack on the
classification loss with the model in eval mode; the part model's loss keeps its
segmentation term on the adversarial images). All four are measured on:

- clean accuracy (test images with random backgrounds tied to no class),
- PGD accuracy (L-inf, ``pgd_eval_steps`` steps x ``pgd_restarts`` restarts),
- mean accuracy over the common corruptions (19 types x 5 severities),
- spurious-background accuracy: the training images show their class's background
  pattern with probability ``train_spurious``; the test images show it always
  (aligned) or show another class's pattern (conflict); the gap measures reliance on
  the background.

Training is resumable (one checkpoint folder per model); out_dir/report.md and
out_dir/results.json hold the numbers.
"""
from __future__ import annotations

import json
import os
import pathlib
import time
from typing import Dict, Optional, Sequence

import torch
from torch.utils.data import TensorDataset

from ..attacks import PGD
from ..data.part_masks import PartSegmentationDataset
from ..data.parts import PartsDataset, make_parts
from ..data.to_device import to_device
from ..eval.accuracy import accuracy
from ..eval import robust_accuracy
from ..eval.corruption_benchmark import corruption_accuracy
from ..eval.corruptions import CORRUPTIONS, corruption_sources
from ..eval.report import Report, plot_bars, corruption_section
from ..models import SmallCNN, build_part_model
from ..train import (MAT, PGDAT, TRADES, CrossEntropy, PartMAT, PartSemiSupervised, PartTRADES,
                     Trainer)

ADV_OBJECTIVES = ("pgd", "trades", "mat")


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def matched_cnn(target_params: int, num_classes: int, image_size: int, width: int = 16) -> SmallCNN:
    """A SmallCNN whose hidden width brings its parameter count closest to target_params."""
    base = _params(SmallCNN(3, num_classes, image_size, width=width, hidden=1))
    per_hidden = _params(SmallCNN(3, num_classes, image_size, width=width, hidden=2)) - base
    hidden = max(8, round((target_params - base) / per_hidden) + 1)
    return SmallCNN(3, num_classes, image_size, width=width, hidden=hidden)


def _objectives(kind: str, eps: float, steps: int, seed: int):
    """(part objective, CNN objective) of the adversarial stage."""
    alpha = 1.25 * eps / steps
    if kind == "pgd":  # PGD-AT: all-adversarial classification (MAT with beta = 1)
        return (PartMAT(beta=1.0, eps=eps, alpha=alpha, steps=steps, seed=seed),
                PGDAT(eps=eps, alpha=alpha, steps=steps, seed=seed))
    if kind == "trades":
        return (PartTRADES(eps=eps, alpha=alpha, steps=steps, seed=seed),
                TRADES(eps=eps, alpha=alpha, steps=steps, seed=seed))
    if kind == "mat":
        return (PartMAT(beta=0.5, eps=eps, alpha=alpha, steps=steps, seed=seed),
                MAT(beta=0.5, eps=eps, alpha=alpha, steps=steps, seed=seed))
    raise ValueError(f"adv_objective must be one of {', '.join(ADV_OBJECTIVES)}, got {kind!r}")



@torch.no_grad()
def _part_pixel_accuracy(model, x, masks, batch_size: int = 256) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        _, parts = model(x[i:i + batch_size], return_parts=True)
        correct += int((parts.argmax(1) == masks[i:i + batch_size]).sum())
    return correct / masks.numel()


def run(out_dir: os.PathLike, *, n_train: int = 4000, n_test: int = 1000, epochs: int = 8,
        adv_epochs: int = 4, image_size: int = 32, eps: float = 8 / 255, pgd_steps: int = 10,
        pgd_eval_steps: int = 20, pgd_restarts: int = 1, adv_objective: str = "pgd",
        train_spurious: float = 0.5, mask_fraction: float = 1.0, seg_width: int = 16,
        corruption_samples: int = 256, corruptions: Optional[Sequence[str]] = None,
        batch_size: int = 128, seed: int = 0, progress: bool = True,
        device: Optional[str] = None) -> Dict[str, dict]:
    """Train the four models (resumable), evaluate them and write the report.

    Returns {model name: measurements}; model names 'part_clean', 'cnn_clean',
    'part_<adv_objective>', 'cnn_<adv_objective>'.
    """
    if adv_objective not in ADV_OBJECTIVES:
        raise ValueError(f"adv_objective must be one of {', '.join(ADV_OBJECTIVES)}, got "
                         f"{adv_objective!r}")
    corruption_sources(corruptions or CORRUPTIONS)  # no frost photos: fail now, not after training
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = make_parts(n_train, split="train", image_size=image_size, seed=seed,
                       spurious=train_spurious)
    test = make_parts(n_test, split="test", image_size=image_size, seed=seed, spurious=0.0)
    aligned = make_parts(n_test, split="test", image_size=image_size, seed=seed, spurious=1.0)
    conflict = make_parts(n_test, split="test", image_size=image_size, seed=seed, spurious=1.0,
                          mismatch=True)
    train, test, aligned, conflict = (to_device(d, device)
                                      for d in (train, test, aligned, conflict))
    k, classes = PartsDataset.num_parts, len(PartsDataset.class_names)
    part_train = PartSegmentationDataset.from_parts(train, mask_fraction=mask_fraction, seed=seed,
                                                    packed=True)
    cnn_train = TensorDataset(train.images, train.labels)  # (x, y): no masks for the CNN

    torch.manual_seed(seed)
    part = build_part_model(k, classes, head="weighted_bbox",
                            segmenter_kwargs={"width": seg_width})
    cnn = matched_cnn(_params(part), classes, image_size)
    adv_part, adv_cnn = _objectives(adv_objective, eps, pgd_steps, seed)
    plan = [("part_clean", part, PartSemiSupervised(), part_train, None, epochs),
            ("cnn_clean", cnn, CrossEntropy(), cnn_train, None, epochs),
            (f"part_{adv_objective}", None, adv_part, part_train, "part_clean", adv_epochs),
            (f"cnn_{adv_objective}", None, adv_cnn, cnn_train, "cnn_clean", adv_epochs)]

    models: Dict[str, torch.nn.Module] = {}
    seconds: Dict[str, float] = {}
    for name, model, objective, data, start, n_epochs in plan:
        if model is None:  # adversarial stage: a copy of the clean model, trained on
            torch.manual_seed(seed)
            model = (build_part_model(k, classes, head="weighted_bbox",
                                      segmenter_kwargs={"width": seg_width})
                     if name.startswith("part") else matched_cnn(_params(part), classes,
                                                                 image_size))
            model.load_state_dict(models[start].state_dict())
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        Trainer(model, objective, data, batch_size=batch_size, epochs=n_epochs, optimizer="adamw",
                lr=2e-3 if start is None else 1e-3, weight_decay=1e-4, schedule="onecycle",
                warmup_epochs=0.2 * n_epochs, out_dir=out / name, seed=seed,
                progress=progress, device=device).fit()
        seconds[name] = time.perf_counter() - t0
        models[name] = model.eval()

    n_c = min(corruption_samples, n_test)
    results: Dict[str, dict] = {}
    corr = {}
    for name, model in models.items():
        atk = PGD(model, eps=eps, steps=pgd_eval_steps, alpha=2.5 * eps / pgd_eval_steps,
                  restarts=pgd_restarts, seed=seed)
        rob = robust_accuracy(model, (test.images, test.labels), [atk], progress=False,
                              checks="warn")
        corr[name] = corruption_accuracy(model, (test.images[:n_c], test.labels[:n_c]),
                                         corruptions=corruptions or CORRUPTIONS, seed=seed,
                                         progress=progress)
        acc_aligned = accuracy(model, aligned.images, aligned.labels)
        acc_conflict = accuracy(model, conflict.images, conflict.labels)
        results[name] = {
            "parameters": _params(model),
            "train_seconds": round(seconds[name], 1),
            "clean_accuracy": accuracy(model, test.images, test.labels),
            "pgd_accuracy": rob.worst_case,
            "corruption_mean_accuracy": corr[name].mean(),
            "n_test": n_test, "n_corruption": corr[name].n, "num_classes": classes,
            "spurious_aligned_accuracy": acc_aligned,
            "spurious_conflict_accuracy": acc_conflict,
            "spurious_gap": acc_aligned - acc_conflict,
            "corruption_per_type": {c: sum(v) / len(v) for c, v in corr[name].accuracy.items()},
        }
        if name.startswith("part"):
            results[name]["part_pixel_accuracy"] = _part_pixel_accuracy(model, test.images,
                                                                         test.part_masks)
    config = dict(n_train=n_train, n_test=n_test, epochs=epochs, adv_epochs=adv_epochs,
                  image_size=image_size, eps=eps, pgd_steps=pgd_steps,
                  pgd_eval_steps=pgd_eval_steps, pgd_restarts=pgd_restarts,
                  adv_objective=adv_objective, train_spurious=train_spurious,
                  mask_fraction=mask_fraction, seg_width=seg_width,
                  corruption_samples=n_c, batch_size=batch_size, seed=seed)
    _write_report(out, results, corr, config)
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps({"config": config, "results": results}, indent=1))
    os.replace(tmp, out / "results.json")
    return results


def _write_report(out, results, corr, cfg):
    r = Report(out, "Part-based model vs a plain CNN (embedded `parts`)")
    r.text(f"{cfg['n_train']} training images ({cfg['image_size']} px; class background with "
           f"probability {cfg['train_spurious']}), {cfg['n_test']} test images. Part model: "
           f"small encoder-decoder segmenter (width {cfg['seg_width']}) + weighted-bbox head, "
           f"semi-supervised loss (c = 0.5, masks on {cfg['mask_fraction']:.0%} of the "
           "images). CNN: SmallCNN with about as many parameters. Clean training "
           f"{cfg['epochs']} epochs; then {cfg['adv_epochs']} epochs of `{cfg['adv_objective']}` "
           f"adversarial training from the clean weights (L-inf eps {cfg['eps']:.4f}, "
           f"{cfg['pgd_steps']} steps of 1.25 eps / steps). PGD evaluation: "
           f"{cfg['pgd_eval_steps']} steps x {cfg['pgd_restarts']} restart(s); corruptions on "
           f"{cfg['corruption_samples']} test images.")
    names = list(results)
    keys = [("parameters", "parameters"), ("clean_accuracy", "clean accuracy"),
            ("pgd_accuracy", f"PGD accuracy (eps {cfg['eps']:.4f})"),
            ("corruption_mean_accuracy", "mean corruption accuracy"),
            ("spurious_aligned_accuracy", "accuracy, class background"),
            ("spurious_conflict_accuracy", "accuracy, other class's background"),
            ("spurious_gap", "background reliance (aligned - conflict)"),
            ("train_seconds", "training seconds")]
    rows = [[label] + [results[n][key] for n in names] for key, label in keys]
    rows.append(["part pixel accuracy"]
                + [results[n].get("part_pixel_accuracy", "") for n in names])
    n_test, k = cfg["n_test"], len(PartsDataset.class_names)
    r.heading("Summary").table(["measure"] + names, rows,
                               n={"test images": n_test,
                                  "images per corruption": cfg["corruption_samples"]})
    r.chance_warnings({n: results[n]["clean_accuracy"] for n in names}, n=n_test, num_classes=k)
    r.figure(plot_bars({n: results[n]["clean_accuracy"] for n in names}, "clean accuracy",
                       "Clean accuracy", chance=1 / k, n=n_test), "clean_accuracy")
    r.figure(plot_bars({n: results[n]["pgd_accuracy"] for n in names}, "PGD accuracy",
                       f"PGD-{cfg['pgd_eval_steps']} accuracy (L-inf eps {cfg['eps']:.4f})",
                       chance=1 / k, n=n_test), "pgd_accuracy")
    corruption_section(r, corr, chance=1 / k)
    r.write()
