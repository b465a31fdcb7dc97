"""Shared-CPU benchmark: how much robustops slows down when other processes busy the cores,
against the slowdown of a plain eager PyTorch workload measured in the same run.

A user's job shares the machine with DataLoader workers or other jobs. Code whose
threads spin at barriers, or that splits tiny work over every core, collapses
there (each barrier waits for a descheduled thread) while plain PyTorch merely
slows down. Each workload is timed idle, then with `busy` background processes
spinning on the cores (started and stopped by this module), then idle again:
slowdown = loaded / idle, and the figure of merit is slowdown(workload) /
slowdown(eager), with a goal of at most 1.3 (issue 16).
"""
from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from typing import Callable, Dict, Iterator, List, Tuple

import torch

from .timing import format_table, summarize, usable_cores

GOAL = 1.3  # slowdown(workload) / slowdown(eager) must stay at or below this

_SPIN = "import signal, sys; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\nwhile True: pass"


@contextlib.contextmanager
def busy_background(n: int) -> Iterator[List[subprocess.Popen]]:
    """n background processes, each spinning one core at 100% until the block ends."""
    procs = [subprocess.Popen([sys.executable, "-c", _SPIN], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(n)]
    try:
        time.sleep(0.3)  # let them reach their loops
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def corruption_suite(n: int = 256) -> Callable[[], object]:
    """The 15 corruptions x 5 severities on n smooth 3x32x32 images."""
    from ..eval.corruptions import SEVERITIES, STANDARD, corrupt
    from .corruptions import smooth_images

    x = smooth_images(n)
    for name in STANDARD:  # lazy set-up (assets, dispatch) outside the timing
        corrupt(x[:1], name, 1, seed=0)

    def run():
        for name in STANDARD:
            for s in SEVERITIES:
                corrupt(x, name, s, seed=0)
    return run


def pgd10(batch: int = 128) -> Callable[[], object]:
    """PGD-10 (eps 8/255, random start) on SmallCNN for 3x32x32, batch `batch`."""
    from ..attacks import PGD
    from .attacks import small_cifar_batch

    model, x, y = small_cifar_batch(batch)
    attack = PGD(model, eps=8 / 255, alpha=2 / 255, steps=10)
    attack(x, y)
    return lambda: attack(x, y)


def eager_workload(batch: int = 128, steps: int = 10) -> Callable[[], object]:
    """Plain eager PyTorch of a similar size: `steps` forward+input-gradient passes of the
    same SmallCNN written with nn/aten ops only, plus sign/clamp updates (a hand PGD)."""
    from .attacks import small_cifar_batch

    model, x, y = small_cifar_batch(batch)
    eps, alpha = 8 / 255, 2 / 255

    def run():
        xa = x.clone()
        for _ in range(steps):
            xa.requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(model(xa), y)
            (g,) = torch.autograd.grad(loss, xa)
            with torch.no_grad():
                xa = torch.min(torch.max(xa + alpha * g.sign(), x - eps), x + eps).clamp(0, 1)
        return xa
    run()
    return run


WORKLOADS: Dict[str, Callable[..., Callable[[], object]]] = {
    "eager PyTorch (hand PGD-10, SmallCNN b128)": eager_workload,
    "corruption suite (15 x 5, 256 images)": corruption_suite,
    "PGD-10 (SmallCNN b128)": pgd10,
}


def _time(fn: Callable[[], object], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return summarize(samples).median


def measure(repeats: int = 3, busy: int | None = None, quick: bool = False) -> Dict[str, dict]:
    """{workload: {idle_s, loaded_s, slowdown, relative}}; idle is the mean of the runs before
    and after the loaded one (drift cancels); relative = slowdown / eager's slowdown."""
    busy = usable_cores() if busy is None else busy
    fns = {}
    for name, make in WORKLOADS.items():
        if quick and "corruption" in name:
            fns[name] = corruption_suite(32)
        elif quick:
            fns[name] = make(32)
        else:
            fns[name] = make()
    idle1 = {k: _time(f, repeats) for k, f in fns.items()}
    with busy_background(busy):
        loaded = {k: _time(f, repeats) for k, f in fns.items()}
    idle2 = {k: _time(f, repeats) for k, f in fns.items()}
    out = {}
    for k in fns:
        idle = (idle1[k] + idle2[k]) / 2
        out[k] = {"idle_s": idle, "loaded_s": loaded[k], "slowdown": loaded[k] / idle}
    base = next(iter(out.values()))["slowdown"]
    for v in out.values():
        v["relative"] = v["slowdown"] / base
    return out


def report(quick: bool = False) -> Tuple[str, List[dict]]:
    """Rows for `robustops bench --only shared_cpu`."""
    busy = usable_cores()
    res = measure(repeats=1 if quick else 3, busy=busy, quick=quick)
    rows, recs = [], []
    for name, v in res.items():
        rows.append([name, f"{v['idle_s']:.2f}", f"{v['loaded_s']:.2f}", f"{v['slowdown']:.2f}x",
                     f"{v['relative']:.2f}"])
        recs.append({"case": f"shared cpu: {name}", "busy_processes": busy,
                     "threads": torch.get_num_threads(), **v})
    table = format_table([f"workload ({busy} busy background processes)", "idle s", "loaded s",
                          "slowdown", f"vs eager (goal <= {GOAL})"], rows)
    return table, recs
