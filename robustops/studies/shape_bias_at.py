"""Shape bias of adversarially trained CNNs (METHODS.md section 4) on the embedded `shapes` data.

A standard CNN and a PGD-trained CNN learn the same shape classes from images
whose texture agrees with the shape; then both are measured side by side:
accuracy, shape bias on cue-conflict images (shape of one class filled with the
texture of another), silhouette- and texture-only accuracy, accuracy under
common corruptions, PGD robust accuracy, and the total-variation smoothness of
their activation maps. Everything lands in out_dir/report.md with PNG plots.
"""
from __future__ import annotations

import json
import os
import pathlib
import time
from typing import Dict, Optional

import torch

from ..attacks import PGD
from ..eval import robust_accuracy
from ..eval.activation_smoothness import activation_smoothness
from ..eval.corruption_benchmark import corruption_accuracy
from ..eval.corruptions import CORRUPTIONS
from ..eval.report import Report, plot_bars, plot_corruption_accuracy, plot_image_grid
from ..eval.shape_bias import evaluate_shape_bias
from ..models import SmallCNN
from ..train import PGDAT, CrossEntropy, Trainer


def _accuracy(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def run(out_dir: os.PathLike, *, n_train: int = 4000, n_test: int = 1000, epochs: int = 12,
        eps: float = 4 / 255, pgd_steps: int = 5, corruption_samples: int = 256,
        seed: int = 0, image_size: int = 32, progress: bool = True,
        corruptions: Optional[tuple] = None) -> Dict[str, dict]:
    """Train both models (resumable) and write the report; returns the measured numbers."""
    from ..data.shapes import make_shapes

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = make_shapes(n_train, split="train", image_size=image_size, seed=seed, mode="consistent")
    test = make_shapes(n_test, split="test", image_size=image_size, seed=seed, mode="consistent")
    conflict = make_shapes(n_test, split="test", image_size=image_size, seed=seed,
                           mode="cue_conflict")
    silhouette = make_shapes(n_test, split="test", image_size=image_size, seed=seed,
                             mode="silhouette")
    texture = make_shapes(n_test, split="test", image_size=image_size, seed=seed, mode="texture")
    k = len(train.class_names)
    objectives = {"standard": CrossEntropy(),
                  "pgd_trained": PGDAT(eps=eps, alpha=2.5 * eps / pgd_steps, steps=pgd_steps,
                                       seed=seed)}
    results: Dict[str, dict] = {}
    corr: Dict[str, object] = {}
    models = {}
    for name, objective in objectives.items():
        torch.manual_seed(seed)
        model = SmallCNN(3, k, image_size)
        if name == "pgd_trained":
            # Adversarial training from the clean model (METHODS.md's protocol): from
            # scratch, PGD-AT of this small CNN can collapse to a constant output.
            model.load_state_dict(models["standard"].state_dict())
        t0 = time.perf_counter()
        Trainer(model, objective, train, batch_size=128, epochs=epochs, optimizer="adamw",
                lr=2e-3 if name == "standard" else 1e-3, weight_decay=1e-4, schedule="onecycle", warmup_epochs=0.2 * epochs,
                out_dir=out / name, seed=seed, progress=progress).fit()
        train_s = time.perf_counter() - t0
        model.eval()
        models[name] = model
        sb = evaluate_shape_bias(model, conflict.images, conflict.shape_labels,
                                 conflict.texture_labels, categories=train.class_names)
        atk = PGD(model, eps=eps, steps=10, alpha=2.5 * eps / 10, seed=seed)
        # checks='warn': a degenerate model is reported, not fatal, in a study.
        rob = robust_accuracy(model, (test.images, test.shape_labels), [atk], progress=False,
                              checks="warn")
        n_c = min(corruption_samples, n_test)
        corr[name] = corruption_accuracy(model, (test.images[:n_c], test.shape_labels[:n_c]),
                                         corruptions=corruptions or CORRUPTIONS, seed=seed,
                                         progress=progress)
        tv = activation_smoothness(model, test.images[:256])
        tv_noisy = activation_smoothness(model, test.images[:256], noise_std=0.1, seed=seed)
        results[name] = {
            "train_seconds": round(train_s, 1),
            "clean_accuracy": _accuracy(model, test.images, test.shape_labels),
            "silhouette_accuracy": _accuracy(model, silhouette.images, silhouette.shape_labels),
            "texture_only_accuracy": _accuracy(model, texture.images, texture.texture_labels),
            "shape_bias": sb.shape_bias, "shape_fraction": sb.shape_fraction,
            "texture_fraction": sb.texture_fraction,
            "pgd10_accuracy": rob.worst_case,
            "corruption_mean_accuracy": corr[name].mean(),
            "tv": {layer: v["tv"] for layer, v in tv.items()},
            "tv_normalized": {layer: v["tv_normalized"] for layer, v in tv.items()},
            "tv_normalized_noisy": {layer: v["tv_normalized"] for layer, v in tv_noisy.items()},
        }
    _write_report(out, results, corr, conflict, train.class_names, train.texture_names, eps)
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, out / "results.json")
    return results


def _write_report(out, results, corr, conflict, class_names, texture_names, eps):
    r = Report(out, "Shape bias of a standard vs a PGD-trained CNN (embedded `shapes` data)")
    r.text("Both models: SmallCNN trained on images whose texture agrees with their shape; "
           f"the PGD-trained one with L-inf PGD at eps {eps:.4f}. Shape bias is measured on "
           "cue-conflict images (shape of one class filled with another class's texture).")
    names = list(results)
    rows = []
    for key, label in [("clean_accuracy", "clean accuracy"), ("shape_bias", "shape bias"),
                       ("silhouette_accuracy", "silhouette-only accuracy"),
                       ("texture_only_accuracy", "texture-only accuracy"),
                       ("corruption_mean_accuracy", "mean corruption accuracy"),
                       ("pgd10_accuracy", f"PGD-10 accuracy (eps {eps:.4f})"),
                       ("train_seconds", "training seconds")]:
        rows.append([label] + [results[n][key] for n in names])
    r.heading("Summary").table(["measure"] + names, rows)
    r.figure(plot_bars({n: results[n]["shape_bias"] for n in names}, "shape bias",
                       "shape bias on cue-conflict images"), "shape_bias")
    r.heading("Common corruptions").figure(plot_corruption_accuracy(corr), "corruptions",
                                           "accuracy per corruption and severity")
    layers = list(results[names[0]]["tv_normalized"])
    r.heading("Smoothness of activation maps")
    r.text("Total variation per channel map, divided by the map's L1 mass (lower = smoother), "
           "on clean test images and with Gaussian noise (std 0.1).")
    r.table(["layer"] + [f"{n} clean" for n in names] + [f"{n} noisy" for n in names],
            [[layer] + [results[n]["tv_normalized"][layer] for n in names]
             + [results[n]["tv_normalized_noisy"][layer] for n in names] for layer in layers])
    r.heading("Example cue-conflict images")
    titles = [f"{class_names[s]}/{texture_names[t]}" for s, t in
              zip(conflict.shape_labels[:16].tolist(), conflict.texture_labels[:16].tolist())]
    r.figure(plot_image_grid(conflict.images[:16], titles), "cue_conflict_examples",
             "shape / texture")
    r.write()
