"""The bad-input matrix (issue 15, "Nothing silent"): every public op, module, attack and
robust_accuracy fed wrong dtypes, ranks, shapes, devices, NaN/Inf, out-of-range images,
negative budgets, empty batches, non-tensors and odd layouts, each outcome classified:

  error     a TypeError/ValueError whose message names the argument
  unclear   a TypeError/ValueError that does not name it (reported, not a failure)
  accepted  returned a result that passes the case's check (same as the plain contiguous
            call for layouts, the reference backend for float64, NaN propagated, ...)
  silent    returned where an error is due, or a result that fails the check
  crash     any other exception (RuntimeError, IndexError, ... from deep inside) or a
            dead process (segfault)
  hang      no answer within HANG_S seconds

The cases run in a child process (this file run as a script), which reports each one as
it goes; the parent restarts it after the case that killed or hung it. The test fails on
any silent, crash or hang. `python tests/test_bad_inputs.py` prints the counts (also
printed by `pytest -s`); `--cases` lists every case with its outcome.
"""
from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HANG_S = 60.0  # one case (a few small calls): far below this unless it hangs

OUTCOMES = ("error", "unclear", "accepted", "silent", "crash", "hang")


# ----------------------------------------------------------------------------- cases
# (Built in the child only: the parent needs no torch beyond counting.)


@dataclass
class Case:
    """One call with bad (or odd but valid) inputs and what is due.

    expect: 'error' (a clear error is due: a result is silent), 'ok' (must run and pass
    check), 'either' (a clear error, or a result that passes check). names: an error's
    message must contain one of them (the argument it is about).
    """
    name: str
    run: Callable[[], Any]
    expect: str
    names: Sequence[str] = ()
    check: Optional[Callable[[Any], bool]] = None


def _tensors(out) -> List[Any]:
    import torch
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in _tensors(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in _tensors(v)]
    return []


def _close(a, b, rtol=1e-4, atol=1e-5) -> bool:
    import torch
    ta, tb = _tensors(a), _tensors(b)
    if len(ta) != len(tb):
        return False
    for x, y in zip(ta, tb):
        if x.shape != y.shape:
            return False
        if x.is_floating_point() or y.is_floating_point():
            if not torch.allclose(x.double(), y.double(), rtol=rtol, atol=atol, equal_nan=True):
                return False
        elif not torch.equal(x, y):
            return False
    return True


def _has_nan(out) -> bool:
    import torch
    return any(t.is_floating_point() and not torch.isfinite(t).all() for t in _tensors(out))


@dataclass
class Target:
    """A public callable and how to call it well.

    good(): keyword arguments of a valid call (fresh tensors each time); call(**kw) runs it.
    tensors: the float tensor arguments to spoil ({name: batch dim or None}); images: those
    that hold images in [0, 1]; scalars: (case name, override, names) calls with bad
    Python arguments (a clear error due). valid: check of any accepted result.
    reference(**kw): the expected result of a valid call (default: call itself under the
    reference backend, where the target has backends).
    """
    name: str
    good: Callable[[], Dict[str, Any]]
    call: Callable[..., Any]
    tensors: Dict[str, Optional[int]]
    images: Sequence[str] = ()
    scalars: Sequence[tuple] = ()
    valid: Callable[[Any, Dict[str, Any]], bool] = lambda out, kw: True
    reference: Optional[Callable[..., Any]] = None
    float64: bool = True       # float64 inputs are supported
    broadcast: Sequence[str] = ()   # tensors that may broadcast (a shape change is valid)
    nan_propagates: bool = True  # a result (not an error) for NaN input must hold NaN
    nonfinite_ok: Sequence[str] = ()  # tensors where NaN/Inf have a documented meaning
    inf_ok: bool = False       # +-Inf are ordinary values (ranks)
    int_ok: bool = False       # integer tensors are valid (ranks)
    any_rank: bool = False     # (B, *) inputs: one dimension less is still a valid call
    input_names: Sequence[str] = ()  # other names an error may use for a tensor ("input")
    extra: Sequence[Case] = field(default_factory=list)


def _ref_backend(call):
    from robustops import backend

    def ref(**kw):
        with backend.use("reference"):
            return call(**kw)
    return ref


def _perturbations(t: Target) -> List[Case]:
    """The generic bad inputs of a target's tensor arguments."""
    import torch
    cases: List[Case] = []
    ref = t.reference or _ref_backend(t.call)

    def with_(arg, fn):
        def run():
            kw = t.good()
            kw[arg] = fn(kw[arg])
            return t.call(**kw)
        return run

    def matches_plain(arg, fn, float_first=False):
        """A layout change of `arg`: the result equals the plain call's (float_first: the
        plain call gets fn(arg) back in arg's dtype, e.g. integers as floats)."""
        def run():
            kw = t.good()
            plain = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
            if float_first:
                plain[arg] = fn(plain[arg]).to(kw[arg].dtype)
            want = t.call(**plain)
            kw[arg] = fn(kw[arg])
            return t.call(**kw), want
        return run

    multi = len(t.tensors) > 1
    for arg, bdim in t.tensors.items():
        n = f"{t.name}/{arg}"
        names = (arg,) + tuple(t.input_names)
        for dt in (torch.int64, torch.bool, torch.complex64):
            label = f"{n}/dtype {dt}".replace("torch.", "")
            spoil = (lambda x, dt=dt: (x * 3).to(dt))
            if dt == torch.int64 and t.int_ok:  # the same call on the same values as floats
                cases.append(Case(label, matches_plain(arg, spoil, float_first=True), "either",
                                  names, lambda o: _close(o[0], o[1])))
            else:
                cases.append(Case(label, with_(arg, spoil), "error", names))
        if t.float64:
            def run64(arg=arg):
                kw = t.good()
                kw = {k: (v.double() if isinstance(v, torch.Tensor) and v.is_floating_point()
                          else v) for k, v in kw.items()}
                return t.call(**dict(kw)), ref(**kw)
            cases.append(Case(f"{n}/float64 (all)", run64, "either", (arg,),
                              lambda o: _close(o[0], o[1], 1e-6, 1e-8)))
        if t.any_rank or arg in t.broadcast:
            cases.append(Case(f"{n}/rank - 1", with_(arg, lambda x: x[0]), "either", names,
                              lambda o: t.valid(o, {})))
        else:
            cases.append(Case(f"{n}/rank - 1", with_(arg, lambda x: x[0]), "error",
                              names + ("shape",)))
        if multi and arg not in t.broadcast:
            cases.append(Case(f"{n}/rank + 1", with_(arg, lambda x: x[None]), "error",
                              names + ("shape",)))
            cases.append(Case(f"{n}/last dim + 1",
                              with_(arg, lambda x: torch.cat([x, x[..., :1]], -1)), "error",
                              names + ("shape",)))
        if multi:
            cases.append(Case(f"{n}/meta device", with_(arg, lambda x: x.to("meta")), "error",
                              names + ("device", "meta")))
        cases.append(Case(f"{n}/non-tensor list", with_(arg, lambda x: x.tolist()), "error",
                          names))
        for bad in ("nan", "inf"):
            def spoil(x, bad=bad):
                x = x.clone()
                x.view(-1)[x.numel() // 2] = float(bad)
                return x
            meaningful = arg in t.nonfinite_ok or (bad == "inf" and t.inf_ok)
            check = ((lambda o: _has_nan(o) or t.valid(o, {})) if meaningful
                     else (lambda o: _has_nan(o)) if t.nan_propagates else (lambda o: False))
            cases.append(Case(f"{n}/{bad}", with_(arg, spoil), "either",
                              names + (bad, "NaN", "Inf", "finite"), check))
        if arg in t.images:
            for label, shift in (("images > 1", 1.5), ("images < 0", -1.5)):
                cases.append(Case(f"{n}/{label}", with_(arg, lambda x, s=shift: x + s),
                                  "either", names + ("[0, 1]", "range", "lo", "hi", "span"),
                                  lambda o, t=t: t.valid(o, {})))
        # Layouts that must work: a strided view with the same values, channels_last.
        def strided(x):
            big = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype)
            big[..., ::2] = x
            return big[..., ::2]
        cases.append(Case(f"{n}/non-contiguous", matches_plain(arg, strided), "ok", (arg,),
                          lambda o: _close(o[0], o[1])))
        if t.good()[arg].ndim == 4:
            cases.append(Case(f"{n}/channels_last",
                              matches_plain(arg, lambda x: x.contiguous(
                                  memory_format=torch.channels_last)), "ok", (arg,),
                              lambda o: _close(o[0], o[1])))
    # An empty batch (every batched tensor): an empty result or a clear error.
    batched = {a: d for a, d in t.tensors.items() if d is not None}
    if batched:
        def empty():
            kw = t.good()
            for a, d in batched.items():
                kw[a] = kw[a].narrow(d, 0, 0)
            return t.call(**kw)
        cases.append(Case(f"{t.name}/empty batch", empty, "either",
                          tuple(batched) + ("empty", "batch", "B")),
                     )
    for label, override, names in t.scalars:
        def run(override=override):
            kw = t.good()
            kw.update(override() if callable(override) else override)
            return t.call(**kw)
        cases.append(Case(f"{t.name}/{label}", run, "error", names))
    # The valid call itself, against its reference.
    def plain():
        kw = t.good()
        return t.call(**kw), ref(**kw)
    cases.append(Case(f"{t.name}/valid", plain, "ok", (),
                      lambda o: _close(o[0], o[1]) and t.valid(o[0], {})))
    return cases + list(t.extra)


def build_cases() -> List[Case]:
    import torch
    from torch import nn

    import robustops
    from robustops.attacks import APGD, FGSM, PGD
    from robustops.eval.robust_accuracy import robust_accuracy
    from robustops.nn import GroupInhibition, Normalize, VOneBlock, normalized
    from robustops.ops import box_hyperplane_step, kendall_tau, spearman_rho, topk_intersection

    def gen(seed=0):
        return torch.Generator().manual_seed(seed)

    def rand(*shape, seed=0):
        return torch.rand(*shape, generator=gen(seed))

    def randn(*shape, seed=0):
        return torch.randn(*shape, generator=gen(seed))

    def in_box(out, eps=None, x_nat=None):
        t = _tensors(out)[0]
        return bool(torch.isfinite(t).all() and t.min() >= 0 and t.max() <= 1)

    targets: List[Target] = []

    # --- attack-step ops -------------------------------------------------------------
    def pgd_kw():
        x_nat = rand(2, 3, 4, 4)
        return dict(x=(x_nat + 0.02 * randn(2, 3, 4, 4, seed=1)).clamp(0, 1), x_nat=x_nat,
                    grad=randn(2, 3, 4, 4, seed=2), eps=0.05, alpha=0.01)
    pgd_scalars = [("eps < 0", dict(eps=-0.1), ("eps",)), ("alpha < 0", dict(alpha=-0.1), ("alpha",)),
                   ("eps nan", dict(eps=float("nan")), ("eps",)),
                   ("eps str", dict(eps="0.1"), ("eps",)),
                   ("eps (B,) < 0", lambda: dict(eps=torch.tensor([0.1, -0.1])), ("eps",)),
                   ("eps wrong length", lambda: dict(eps=torch.tensor([0.1, 0.1, 0.1])), ("eps",)),
                   ("norm unknown", dict(norm="l3"), ("norm",)),
                   ("lo > hi", dict(lo=1.0, hi=0.0), ("lo", "hi"))]
    for name, fn in (("pgd_step", robustops.pgd_step), ("pgd_step_", robustops.pgd_step_)):
        # NaN/Inf gradients are documented: a NaN entry leaves its pixel in place.
        targets.append(Target(name, pgd_kw, fn, {"x": 0, "x_nat": 0, "grad": 0},
                              images=("x", "x_nat"), scalars=pgd_scalars,
                              nonfinite_ok=("grad",), valid=lambda o, kw: in_box(o)))
    targets.append(Target(
        "random_init", lambda: dict(x_nat=rand(2, 3, 4, 4), eps=0.05, seed=1),
        robustops.random_init, {"x_nat": 0}, images=("x_nat",), any_rank=True,
        scalars=[("eps < 0", dict(eps=-0.1), ("eps",)), ("eps nan", dict(eps=float("nan")), ("eps",)),
                 ("lo > hi", dict(lo=1.0, hi=0.0), ("lo", "hi")), ("seed float", dict(seed=1.5), ("seed",)),
                 ("norm unknown", dict(norm="l0"), ("norm",))],
        valid=lambda o, kw: in_box(o)))

    # FAB's projection: a NaN/Inf in a row gives that row NaN steps (documented).
    targets.append(Target(
        "box_hyperplane_step", lambda: dict(t=rand(3, 10), w=randn(3, 10, seed=1),
                                            b=randn(3, seed=2)),
        box_hyperplane_step, {"t": 0, "w": 0, "b": 0},
        scalars=[("norm unknown", dict(norm="l3"), ("norm",)),
                 ("lo > hi", dict(lo=1.0, hi=0.0), ("lo", "hi")),
                 ("hi str", dict(hi="1"), ("hi",))]))

    # --- V1 ---------------------------------------------------------------------------
    targets.append(Target(
        "v1_response", lambda: dict(q0=randn(2, 5, 4, 4), q1=randn(2, 2, 4, 4, seed=1), noise=False),
        lambda **kw: robustops.v1_response(**kw), {"q0": 0, "q1": 0},
        scalars=[("k_exc str", dict(k_exc="25"), ("k_exc",)),
                 ("noise_scale < 0", dict(noise_scale=-1.0, noise=True), ("noise_scale",)),
                 ("seed float", dict(seed=0.5), ("seed",))]))
    targets.append(Target(
        "gabor_bank", lambda: dict(frequency=0.1 + 0.1 * rand(4), sigma_x=1 + rand(4, seed=1),
                                   sigma_y=1 + rand(4, seed=2), theta=rand(4, seed=3),
                                   phase=rand(4, seed=4), ksize=5),
        robustops.gabor_bank, {"frequency": 0, "sigma_x": 0, "sigma_y": 0, "theta": 0, "phase": 0},
        scalars=[("ksize 0", dict(ksize=0), ("ksize",)), ("ksize float", dict(ksize=5.0), ("ksize",)),
                 ("sigma 0", lambda: dict(sigma_x=torch.zeros(4)), ("sigma_x",))]))

    def vone_call(x, **kw):
        torch.manual_seed(0)
        block = VOneBlock(simple_channels=4, complex_channels=4, ksize=5, stride=2,
                          image_size=16, noise_mode="fresh", **kw)
        return block(x)
    targets.append(Target(
        "VOneBlock", lambda: dict(x=rand(2, 3, 16, 16)), vone_call, {"x": 0}, images=("x",),
        scalars=[("noise_scale str", dict(noise_scale="0.3"), ("noise_scale",)),
                 ("stride 0", dict(stride=0), ("stride",)), ("ksize even", dict(ksize=4), ("ksize",)),
                 ("noise_mode", dict(noise_mode="bogus"), ("noise_mode",))],
        reference=lambda **kw: vone_call(**kw)))

    # --- part models ------------------------------------------------------------------
    targets.append(Target("part_moments", lambda: dict(logits=randn(2, 4, 5, 6)),
                          robustops.part_moments, {"logits": 0}))

    # --- TENET ------------------------------------------------------------------------
    def feats(seed=0):
        return torch.relu(randn(2, 8, 3, 3, seed=seed))

    def kmeans_valid(out, kw):
        a, m, it = out
        return bool((a >= 0).all() and (a < 3).all() and all(len(set(r.tolist())) == 3 for r in m))
    targets.append(Target(
        "channel_kmeans", lambda: dict(features=feats(), num_groups=3), robustops.channel_kmeans,
        {"features": 0}, valid=kmeans_valid, nan_propagates=False,
        scalars=[("num_groups 0", dict(num_groups=0), ("num_groups",)),
                 ("num_groups > C", dict(num_groups=9), ("num_groups",)),
                 ("max_iter 0", dict(max_iter=0), ("max_iter",)),
                 ("shift_threshold < 0", dict(shift_threshold=-1.0), ("shift_threshold",)),
                 ("seed float", dict(seed=0.5), ("seed",)),
                 ("reseed_farthest str", dict(reseed_farthest="yes"), ("reseed_farthest",))]))

    def assignment():
        return torch.tensor([[0, 1, 2, 0, 1, 2, 0, 1], [2, 2, 1, 1, 0, 0, 1, 2]])
    bad_assign = [("assignment float", lambda: dict(assignment=assignment().float()), ("assignment",)),
                  ("assignment label >= K", lambda: dict(assignment=assignment() + 1), ("assignment", "label")),
                  ("assignment label < 0", lambda: dict(assignment=assignment() - 1), ("assignment", "label")),
                  ("assignment shape", lambda: dict(assignment=assignment()[:, :4]), ("assignment",)),
                  ("assignment meta", lambda: dict(assignment=assignment().to("meta")), ("assignment",)),
                  ("num_groups 0", dict(num_groups=0), ("num_groups",))]
    targets.append(Target(
        "group_inhibition_mask",
        lambda: dict(features=feats(), grad=randn(2, 8, 3, 3, seed=1), assignment=assignment(),
                     num_groups=3),
        robustops.group_inhibition_mask, {"features": 0, "grad": 0}, scalars=bad_assign,
        # A group whose weight is not > 0 gets mask 1 whatever F holds (the paper's too);
        # a NaN gradient makes the weight NaN: mask 1 here, NaN in the paper (reported).
        nonfinite_ok=("features", "grad"),
        valid=lambda o, kw: bool(torch.isfinite(o).all() and o.min() >= 0 and o.max() <= 1)))
    targets.append(Target(
        "group_orthogonality_loss",
        lambda: dict(features=feats(), assignment=assignment(), num_groups=3),
        robustops.group_orthogonality_loss, {"features": 0}, scalars=bad_assign))

    # --- attribution ops --------------------------------------------------------------
    targets.append(Target(
        "ig_accumulate", lambda: dict(path_grads=randn(3, 2, 3, 4, 4), x=rand(2, 3, 4, 4, seed=1),
                                      baseline=rand(2, 3, 4, 4, seed=2)),
        robustops.ig_accumulate, {"path_grads": 1, "x": 0, "baseline": 0}, broadcast=("baseline",),
        scalars=[("weights wrong length", dict(weights=[0.5, 0.5]), ("weights",)),
                 ("weights nan", dict(weights=[0.5, float("nan"), 0.5]), ("weights",))]))
    targets.append(Target("pixel_softmax_kl", lambda: dict(attr=randn(2, 3, 4, 4)),
                          robustops.pixel_softmax_kl, {"attr": 0}, any_rank=True))
    targets.append(Target("sign_matched_product",
                          lambda: dict(b=randn(2, 3, 4, 4), d=randn(2, 3, 4, 4, seed=1)),
                          robustops.sign_matched_product, {"b": 0, "d": 0}))
    rank_scalars = [("k 0", dict(k=0), ("k",)), ("k > N", dict(k=999), ("k",)),
                    ("k float", dict(k=2.5), ("k",))]
    for name, fn, has_k in (("rank_metrics", robustops.rank_metrics, True),
                            ("topk_intersection", topk_intersection, True),
                            ("kendall_tau", kendall_tau, False),
                            ("spearman_rho", spearman_rho, False)):
        targets.append(Target(
            name, (lambda has_k=has_k: dict(a=randn(2, 3, 4, 4), b=randn(2, 3, 4, 4, seed=1),
                                            **({"k": 5} if has_k else {}))),
            fn, {"a": 0, "b": 0}, scalars=rank_scalars if has_k else [], nan_propagates=False,
            int_ok=True, inf_ok=True))

    # --- modules ----------------------------------------------------------------------
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    targets.append(Target(
        "Normalize", lambda: dict(x=rand(2, 3, 4, 4), mean=mean, std=std),
        lambda x, mean, std: Normalize(mean, std)(x), {"x": 0}, input_names=("input",),
        scalars=[("std 0", dict(std=[0.2, 0.0, 0.3]), ("std",)),
                 ("mean wrong length", dict(mean=[0.5, 0.5]), ("mean",)),
                 ("std nan", dict(std=[0.2, float("nan"), 0.3]), ("std",))],
        reference=lambda x, mean, std: (x - torch.tensor(mean, dtype=x.dtype)[:, None, None])
        / torch.tensor(std, dtype=x.dtype)[:, None, None]))

    def small_model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(8, 5)).eval()
    targets.append(Target(
        "normalized", lambda: dict(x=rand(2, 3, 4, 4), mean=mean, std=std),
        lambda x, mean, std: normalized(small_model(), mean, std)(x), {"x": 0},
        input_names=("input",),
        scalars=[("std 0", dict(std=[0.2, 0.0, 0.3]), ("std",))],
        reference=lambda x, mean, std: small_model().to(x.dtype)(
            (x - torch.tensor(mean, dtype=x.dtype)[:, None, None])
            / torch.tensor(std, dtype=x.dtype)[:, None, None]),
        float64=False))

    def xy():
        return dict(x=rand(4, 3, 8, 8), y=torch.tensor([0, 1, 2, 3]))

    def inhibition(x, y, num_groups=2, layer="1"):
        model = small_model().train()
        gi = GroupInhibition(model, layer, num_groups)
        try:
            return gi.step(x, y)
        finally:
            gi.close() if hasattr(gi, "close") else None

    bad_labels = [("y = -100", lambda: dict(y=torch.tensor([0, 1, -100, 3])), ("y", "label")),
                  ("y >= classes", lambda: dict(y=torch.tensor([0, 1, 5, 3])), ("y", "label")),
                  ("y float", lambda: dict(y=torch.tensor([0.0, 1.0, 2.0, 3.0])), ("y",)),
                  ("y wrong length", lambda: dict(y=torch.tensor([0, 1, 2])), ("y",)),
                  ("y list", lambda: dict(y=[0, 1, 2, 3]), ("y",))]
    targets.append(Target(
        "GroupInhibition", xy, inhibition, {"x": 0}, images=("x",),
        scalars=bad_labels + [("num_groups 0", dict(num_groups=0), ("num_groups",)),
                              ("layer unknown", dict(layer="nope"), ("layer",))],
        reference=inhibition, float64=False,
        valid=lambda o, kw: all(bool(torch.isfinite(t).all()) for t in _tensors(o)
                                if t.is_floating_point())))

    # --- attacks and robust accuracy --------------------------------------------------
    def attack_call(cls, x, y, **ctor):
        model = small_model()
        ctor = {"eps": 8 / 255, "steps": 2, **ctor}
        if cls is FGSM:
            ctor.pop("steps")
        return cls(model, **ctor)(x, y)

    def attack_valid(o, kw):
        return in_box(o)

    for cls in (PGD, FGSM, APGD):
        scal = bad_labels + [("eps < 0", dict(eps=-0.1), ("eps",)),
                             ("eps nan", dict(eps=float("nan")), ("eps",)),
                             ("eps str", dict(eps="0.1"), ("eps",))]
        if cls is not APGD:
            scal.append(("alpha < 0", dict(alpha=-0.1), ("alpha",)))
        if cls is not FGSM:
            scal.append(("steps 0", dict(steps=0), ("steps",)))
        if cls is APGD:
            scal.append(("rho str", dict(rho="x"), ("rho",)))
        targets.append(Target(
            cls.__name__, xy, (lambda cls=cls, **kw: attack_call(cls, **kw)), {"x": 0},
            images=("x",), scalars=scal, valid=attack_valid, input_names=("y", "images"),
            reference=(lambda cls=cls, **kw: attack_call(cls, **kw)), float64=False))

    def racc(x, y, eps=8 / 255, steps=2):
        model = small_model()
        r = robust_accuracy(model, (x, y), [PGD(model, eps=eps, steps=steps)], progress=False)
        return torch.tensor([r.clean, r.worst] if hasattr(r, "worst") else [r.clean])
    targets.append(Target(
        "robust_accuracy", xy, racc, {"x": 0}, images=("x",), input_names=("images", "inputs"),
        scalars=bad_labels + [("eps < 0", dict(eps=-0.1), ("eps",))],
        reference=racc, float64=False,
        valid=lambda o, kw: bool(((o >= 0) & (o <= 1)).all())))

    cases: List[Case] = []
    for t in targets:
        cases.extend(_perturbations(t))
    return cases


# ----------------------------------------------------------------------------- classify


def _clear_errors() -> tuple:
    """TypeError, ValueError and robustops' own documented error types."""
    from robustops.eval.hygiene import EvaluationHygieneError
    return (TypeError, ValueError, EvaluationHygieneError)


def classify(case: Case) -> tuple:
    """(outcome, detail) of one case, run in this process."""
    try:
        out = case.run()
    except _clear_errors() as e:
        msg = str(e)
        if case.expect == "ok":
            return "crash", f"{type(e).__name__} on a valid call: {msg[:200]}"
        named = not case.names or any(n.lower() in msg.lower() for n in case.names)
        return ("error" if named else "unclear"), f"{type(e).__name__}: {msg[:200]}"
    except Exception as e:  # noqa: BLE001 - the point is to see every other kind
        return "crash", f"{type(e).__name__}: {str(e)[:200]}"
    if case.expect == "error":
        return "silent", "returned where an error is due"
    if case.check is not None:
        try:
            good = bool(case.check(out))
        except Exception as e:  # noqa: BLE001
            return "silent", f"result fails its check ({type(e).__name__}: {str(e)[:120]})"
        if not good:
            return "silent", "result fails its check"
    return "accepted", ""


def child(start: int) -> None:
    """Run cases[start:], one line per event, flushed (the parent watches them)."""
    import warnings
    warnings.simplefilter("ignore")
    cases = build_cases()
    print(f"TOTAL\t{len(cases)}", flush=True)
    for i in range(start, len(cases)):
        print(f"START\t{i}\t{cases[i].name}", flush=True)
        outcome, detail = classify(cases[i])
        print(f"RESULT\t{i}\t{outcome}\t{cases[i].name}\t{detail!r}", flush=True)


def run_matrix() -> List[tuple]:
    """Every case's (name, outcome, detail), each in the child; restarts past deaths/hangs."""
    results: Dict[int, tuple] = {}
    total, start = None, 0
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    while total is None or start < total:
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", str(start)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                env=env, cwd=ROOT)
        current, current_name = None, ""
        deadline = time.monotonic() + HANG_S + 60  # the first case also pays the imports
        while True:
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:  # nothing within the limit: the current case hangs
                proc.kill()
                proc.wait()
                if current is None:
                    raise RuntimeError("the bad-input child did not start")
                results[current] = (current_name, "hang", f"no answer in {HANG_S:.0f} s")
                start = current + 1
                break
            line = proc.stdout.readline()
            if not line:  # the child ended
                code = proc.wait()
                if current is not None and current not in results:
                    results[current] = (current_name, "crash", f"process died (exit {code})")
                    start = current + 1
                elif total is not None and current == total - 1:
                    start = total
                elif total is not None and current is None and start >= total:
                    start = total
                else:
                    raise RuntimeError(f"the bad-input child ended early (exit {code})")
                break
            parts = line.rstrip("\n").split("\t")
            if parts[0] == "TOTAL":
                total = int(parts[1])
                if start >= total:
                    proc.kill()
                    proc.wait()
                    break
            elif parts[0] == "START":
                current, current_name = int(parts[1]), parts[2]
                deadline = time.monotonic() + HANG_S
            elif parts[0] == "RESULT":
                results[int(parts[1])] = (parts[3], parts[2], parts[4] if len(parts) > 4 else "")
    return [results[i] for i in sorted(results)]


def summary(results: List[tuple]) -> Dict[str, int]:
    counts = Counter(r[1] for r in results)
    return {"cases": len(results), **{o: counts.get(o, 0) for o in OUTCOMES}}


def report(results: List[tuple], every: bool = False) -> str:
    lines = []
    if every:
        lines += [f"{o:9s} {n}  {d}" for n, o, d in results]
    else:
        lines += [f"{o:9s} {n}  {d}" for n, o, d in results if o not in ("error", "accepted")]
    s = summary(results)
    lines.append("bad-input matrix: " + ", ".join(f"{k} {v}" for k, v in s.items()))
    return "\n".join(lines)


def test_bad_input_matrix():
    results = run_matrix()
    print("\n" + report(results))
    s = summary(results)
    assert s["cases"] > 300
    assert s["error"] > 150 and s["accepted"] > 50  # the matrix does exercise both
    bad = [r for r in results if r[1] in ("silent", "crash", "hang")]
    assert not bad, "\n".join(f"{o}: {n}  {d}" for n, o, d in bad)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(int(sys.argv[2]))
    else:
        print(report(run_matrix(), every="--cases" in sys.argv))
