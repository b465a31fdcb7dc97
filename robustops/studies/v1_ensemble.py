"""V1 variants, their ensemble and a distilled student (METHODS.md section 3) on `shapes`.

Three VOneNets whose front-ends differ (low spatial frequencies, high spatial
frequencies, strong neuronal noise; each its own Gabor seed) learn the embedded
`shapes` data; their softmax-averaging ensemble (front-ends fused into one
convolution) is the teacher of a fourth VOneNet trained by distillation
(temperature-scaled KL + CE). All five are measured on clean test images and
under the common corruptions (19 types x 5 severities). Training is resumable
(each model has its own checkpoint folder); out_dir/report.md holds the numbers.
"""
from __future__ import annotations

import json
import os
import pathlib
import time
from typing import Dict, Optional, Sequence

import torch

from ..data.to_device import to_device
from ..eval.accuracy import accuracy
from ..eval.corruption_benchmark import corruption_accuracy
from ..eval.corruptions import CORRUPTIONS, corruption_sources
from ..eval.report import Report, plot_bars, corruption_section
from ..models.ensemble import Ensemble
from ..models.vonenet import vonenet
from ..train import CrossEntropy, Distillation, Trainer

MEMBERS = (("low_sf", 1), ("high_sf", 2), ("noise_high", 3))   # (variant, gabor_seed)
STUDENT = ("base", 4)
# 32-pixel preset geometry with stride 2 and 64 V1 channels: CPU-sized members.
BLOCK = dict(simple_channels=32, complex_channels=32, stride=2)


def _member(variant: str, gabor_seed: int, num_classes: int, image_size: int):
    return vonenet("small", num_classes, image_size=image_size, variant=variant,
                   gabor_seed=gabor_seed, noise_seed=gabor_seed, **BLOCK)



def run(out_dir: os.PathLike, *, n_train: int = 4000, n_test: int = 1000, epochs: int = 8,
        corruption_samples: int = 256, seed: int = 0, image_size: int = 32,
        progress: bool = True, device: Optional[str] = None,
        corruptions: Optional[Sequence[str]] = None) -> Dict[str, dict]:
    """Train the members and the student (resumable), evaluate all five, write the report."""
    from ..data.shapes import make_shapes

    corruption_sources(corruptions or CORRUPTIONS)  # no frost photos: fail now, not after training
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = make_shapes(n_train, split="train", image_size=image_size, seed=seed)
    test = make_shapes(n_test, split="test", image_size=image_size, seed=seed)
    train, test = to_device(train, device), to_device(test, device)
    k = len(train.class_names)

    def fit(model, objective, name):
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        Trainer(model, objective, train, batch_size=128, epochs=epochs, optimizer="adamw",
                lr=2e-3, weight_decay=1e-4, schedule="onecycle", warmup_epochs=0.2 * epochs,
                out_dir=out / name, seed=seed, progress=progress, device=device).fit()
        return time.perf_counter() - t0

    models, seconds = {}, {}
    for variant, gseed in MEMBERS:
        torch.manual_seed(seed)
        m = _member(variant, gseed, k, image_size)
        seconds[variant] = fit(m, CrossEntropy(), variant)
        models[variant] = m.eval()
    ensemble = Ensemble(list(models.values())).eval()
    torch.manual_seed(seed)
    student = _member(*STUDENT, k, image_size)
    seconds["distilled"] = fit(student, Distillation(ensemble, temperature=4.0, alpha=0.9),
                               "distilled")
    models["ensemble"] = ensemble
    models["distilled"] = student.eval()

    n_c = min(corruption_samples, n_test)
    results: Dict[str, dict] = {}
    corr = {}
    for name, model in models.items():
        torch.manual_seed(seed)  # fresh V1 noise: reproducible evaluation
        corr[name] = corruption_accuracy(model, (test.images[:n_c], test.shape_labels[:n_c]),
                                         corruptions=corruptions or CORRUPTIONS, seed=seed,
                                         progress=progress)
        torch.manual_seed(seed)
        results[name] = {
            "clean_accuracy": accuracy(model, test.images, test.shape_labels),
            "corruption_mean_accuracy": corr[name].mean(),
            "n_test": n_test, "n_corruption": corr[name].n, "num_classes": k,
            "corruption_per_type": {c: sum(v) / len(v) for c, v in corr[name].accuracy.items()},
            "train_seconds": round(seconds.get(name, 0.0), 1),
        }
    _write_report(out, results, corr, epochs, n_train, n_test, k)
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, out / "results.json")
    return results


def _write_report(out, results, corr, epochs, n_train, n_test, num_classes):
    r = Report(out, "V1 variants, their ensemble and a distilled student (embedded `shapes`)")
    members = ", ".join(f"`{v}` (Gabor seed {s})" for v, s in MEMBERS)
    r.text(f"VOneNets with a small back-end, {n_train} training images, {epochs} epochs each. "
           f"Members: {members}; the ensemble averages their softmax (front-ends fused in one "
           f"convolution); the student (`{STUDENT[0]}` front-end, Gabor seed {STUDENT[1]}) "
           "learns from the ensemble by distillation (T = 4, alpha = 0.9). V1 noise is fresh "
           "at every call, in training and evaluation, as in VOneNet.")
    names = list(results)
    r.heading("Summary").table(
        ["measure"] + names,
        [["clean accuracy"] + [results[n]["clean_accuracy"] for n in names],
         ["mean corruption accuracy"] + [results[n]["corruption_mean_accuracy"] for n in names],
         ["training seconds"] + [results[n]["train_seconds"] for n in names]],
        n={"test images": n_test, "images per corruption": next(iter(corr.values())).n})
    r.chance_warnings({n: results[n]["clean_accuracy"] for n in names}, n=n_test,
                      num_classes=num_classes)
    r.figure(plot_bars({n: results[n]["clean_accuracy"] for n in names}, "clean accuracy",
                       "Clean accuracy", chance=1 / num_classes, n=n_test), "clean_accuracy")
    r.figure(plot_bars({n: results[n]["corruption_mean_accuracy"] for n in names},
                       "mean corruption accuracy", "Mean accuracy over corruptions and severities",
                       chance=1 / num_classes, n=next(iter(corr.values())).n), "corruption_mean")
    corruption_section(r, corr, chance=1 / num_classes)
    r.write()
