"""Markdown reports with PNG plots, shared by every evaluation.

`Report(folder)` collects headings, text, tables and figures and writes
folder/report.md (atomically) with the PNGs beside it. The plot helpers draw
the standard figures: accuracy per corruption and severity, bars per model,
accuracy against eps (the robustness curve), grids of example images (corrupted
images, attribution maps).

Conventions, so that every report reads the same way:

- every table states its sample size (`table(..., n=...)` is required) and
  prints fractions with one precision (FLOAT_DIGITS decimals);
- every plot has a title; fractions are drawn as percentages with a value label
  on each bar (a bar of height zero gets a marker and "0.0%", so it is seen),
  and accuracies with a dashed chance line at 1/num_classes;
- `Report.chance_warnings` adds a warning line for every model at chance:
  accuracy a measured on n images with K classes is *at chance* when
  a <= 1/K + CHANCE_Z * sqrt((1/K)(1 - 1/K)/n), i.e. not above chance by more
  than CHANCE_Z binomial standard errors (a one-sided test at about the 2%
  level; below chance counts as at chance too);
- `Report.corruption_sources` states where corruptions with external images
  took them from (frost: the imagecorruptions photographs or the stand-in).
"""
from __future__ import annotations

import math
import os
import pathlib
import textwrap
from typing import Dict, List, Mapping, Optional, Sequence, Union

from torch import Tensor

from ..arguments import require_int

FLOAT_DIGITS = 3
CHANCE_Z = 2.0
TITLE_WIDTH = 60  # characters per title line
SampleSize = Union[int, str, Mapping[str, int]]
SAMPLE_SIZE = "an int >= 0, a str or a mapping of str to int"  # format_n's n, for errors


def _plt():
    import matplotlib
    matplotlib.use("Agg")  # files only: no display on these machines
    import matplotlib.pyplot as plt
    return plt


def format_value(v) -> str:
    """A table cell: floats with FLOAT_DIGITS decimals (NaN as n/a), the rest as str."""
    if isinstance(v, bool) or not isinstance(v, float):
        return str(v)
    return "n/a" if math.isnan(v) else f"{v:.{FLOAT_DIGITS}f}"


def format_n(n: SampleSize) -> str:
    """'n = 400' for an int, 'n: clean 400, corruptions 96' for a mapping, a str as is."""
    if isinstance(n, int):  # a bool too: require_int refuses it
        return f"n = {require_int(n, 'n', minimum=0, what=SAMPLE_SIZE)}"
    if isinstance(n, str):
        return n
    if isinstance(n, Mapping):
        return "n: " + ", ".join(f"{k} {v}" for k, v in n.items())
    raise TypeError(f"n must be {SAMPLE_SIZE}, got {type(n).__name__}")


def chance_margin(n: int, num_classes: int, z: float = CHANCE_Z) -> float:
    """z binomial standard errors of the accuracy of a chance-level classifier on n images."""
    p = 1.0 / num_classes
    return z * math.sqrt(p * (1 - p) / n)


def at_chance(accuracy: float, n: int, num_classes: int, z: float = CHANCE_Z) -> bool:
    """True when `accuracy` on n images is not above 1/num_classes by more than the margin."""
    return accuracy <= 1.0 / num_classes + chance_margin(n, num_classes, z)


class Report:
    """A markdown report in `folder` (created); call `write()` to save report.md."""

    def __init__(self, folder: os.PathLike, title: str):
        self.folder = pathlib.Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.lines: List[str] = [f"# {title}", ""]

    def heading(self, text: str, level: int = 2) -> "Report":
        self.lines += ["#" * level + " " + text, ""]
        return self

    def text(self, text: str) -> "Report":
        self.lines += [text, ""]
        return self

    def table(self, headers: Sequence[str], rows: Sequence[Sequence], *, n: SampleSize) -> "Report":
        """A markdown table followed by its sample size line (n: see format_n)."""
        self.lines.append("| " + " | ".join(headers) + " |")
        self.lines.append("|" + "---|" * len(headers))
        for r in rows:
            self.lines.append("| " + " | ".join(format_value(v) for v in r) + " |")
        self.lines += ["", f"*{format_n(n)}*", ""]
        return self

    def chance_warnings(self, accuracies: Mapping[str, float], *, n: int, num_classes: int,
                        what: str = "clean accuracy") -> List[str]:
        """A warning line for each model whose accuracy is at chance (see the module
        docstring); returns the models at chance."""
        margin = chance_margin(n, num_classes)
        chance = 1.0 / num_classes
        flagged = [m for m, a in accuracies.items() if at_chance(a, n, num_classes)]
        for m in flagged:
            self.text(f"**Warning: `{m}` is at chance.** Its {what} {format_value(accuracies[m])} "
                      f"(n = {n}) is not above chance (1/{num_classes} = "
                      f"{format_value(chance)}) by more than {CHANCE_Z:g} binomial standard "
                      f"errors ({format_value(margin)}): its other numbers say little.")
        return flagged

    def corruption_sources(self, results: Mapping[str, "CorruptionAccuracy"]  # noqa: F821
                           ) -> "Report":
        """State where corruptions with external images took them from (frost)."""
        for line in corruption_source_lines(results):
            self.text(line)
        return self

    def figure(self, fig, name: str, caption: str = "") -> "Report":
        """Save a matplotlib figure as folder/name.png and reference it."""
        plt = _plt()
        path = self.folder / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.lines += [f"![{caption or name}]({path.name})", ""]
        if caption:
            self.lines += [f"*{caption}*", ""]
        return self

    def write(self) -> pathlib.Path:
        path = self.folder / "report.md"
        tmp = path.with_suffix(".md.tmp")
        tmp.write_text("\n".join(self.lines))
        os.replace(tmp, path)
        return path


SOURCE_TEXT = {"imagecorruptions": "the reference frost photographs of the imagecorruptions "
                                   "package (as ImageNet-C)",
               "procedural": "the procedural stand-in textures (asked for; not the reference "
                             "photographs, so frost numbers are not comparable with ImageNet-C)"}


def corruption_source_lines(results: Mapping[str, "CorruptionAccuracy"]) -> List[str]:  # noqa: F821
    """One line per corruption with external images (frost) that `results` measured."""
    lines = []
    if any("frost" in r.accuracy for r in results.values()):
        used = sorted({r.sources.get("frost", "unknown") for r in results.values()
                       if "frost" in r.accuracy})
        text = "; ".join(SOURCE_TEXT.get(u, "not recorded (results measured before "
                                            "sources were recorded)") for u in used)
        lines.append(f"Frost source: {text}.")
    return lines


def figure_texts(fig) -> List[str]:
    """Every non-empty text of a figure: suptitle, axes titles, labels, tick labels, legends."""
    from matplotlib.text import Text
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def _pct(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{100 * v:.1f}%"


def _titled(title: str, n: Optional[SampleSize]) -> str:
    if not isinstance(title, str) or not title.strip():
        raise ValueError("every plot needs a title that says what it shows")
    text = title if n is None else f"{title} ({format_n(n)})"
    return "\n".join(textwrap.wrap(text, TITLE_WIDTH))  # long titles wrap inside the figure


def _chance_line(ax, chance: Optional[float], percent: bool, horizontal: bool = False) -> None:
    if chance is None:
        return
    k = round(1 / chance)
    level = 100 * chance if percent else chance
    label = f"chance 1/{k} = {_pct(chance) if percent else format_value(chance)}"
    line = ax.axvline if horizontal else ax.axhline
    line(level, ls="--", lw=1, color="tab:red", label=label)


def _bar_labels(ax, positions, values, percent: bool, horizontal: bool, color) -> None:
    """A value label on every bar; a zero-height bar also gets a marker so it is seen."""
    scale = 100 if percent else 1
    for pos, v in zip(positions, values):
        text = _pct(v) if percent else ("n/a" if math.isnan(v) else f"{v:g}")
        h = 0.0 if math.isnan(v) else v * scale
        if h == 0:
            ax.plot([h] if horizontal else [pos], [pos] if horizontal else [h],
                    marker="|" if horizontal else "_", ms=14, mew=3, color=color, zorder=3)
        if horizontal:
            ax.annotate(text, (h, pos), xytext=(3, 0), textcoords="offset points",
                        ha="left", va="center", fontsize=7)
        else:
            ax.annotate(text, (pos, h), xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7)


def plot_bars(values: Dict[str, float], ylabel: str, title: str, *, percent: bool = True,
              chance: Optional[float] = None, n: Optional[SampleSize] = None):
    """One bar per model (e.g. accuracy, shape bias), labelled with its value.

    percent: values are fractions, drawn as 0-100%; chance: draw the chance level
    (1/num_classes) as a dashed line. Many bars or long names are drawn
    horizontally, so the names never overlap.
    """
    plt = _plt()
    names, vals = list(values), [float(v) for v in values.values()]
    horizontal = len(names) > 5 or max(len(m) for m in names) > 12
    scale = 100 if percent else 1
    heights = [0.0 if math.isnan(v) else v * scale for v in vals]
    top = max(heights + [100.0 if percent else 1e-9])
    if horizontal:
        fig, ax = plt.subplots(figsize=(5.5, 0.9 + 0.38 * len(names)))
        pos = list(range(len(names)))[::-1]  # first name on top
        ax.barh(pos, heights, color="tab:blue", edgecolor="black", linewidth=0.6)
        ax.set_yticks(pos)
        ax.set_yticklabels(names, fontsize=8)
        ax.set_xlabel(ylabel + (" (%)" if percent else ""))
        ax.set_xlim(min(0.0, min(heights)) * 1.15, top * 1.18)
    else:
        fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(names), 3.2))
        pos = list(range(len(names)))
        ax.bar(pos, heights, color="tab:blue", edgecolor="black", linewidth=0.6)
        ax.set_xticks(pos)
        ax.set_xticklabels(names, fontsize=8, rotation=20 if max(map(len, names)) > 8 else 0,
                           ha="right" if max(map(len, names)) > 8 else "center")
        ax.set_ylabel(ylabel + (" (%)" if percent else ""))
        ax.set_ylim(min(0.0, min(heights)) * 1.15, top * 1.12)
    _bar_labels(ax, pos, vals, percent, horizontal, "tab:blue")
    _chance_line(ax, chance, percent, horizontal)
    if chance is not None:
        ax.legend(fontsize=7, loc="lower right" if horizontal else "upper right")
    ax.set_title(_titled(title, n), fontsize=9)
    fig.tight_layout()
    return fig


def plot_grouped_bars(values: Dict[str, Dict[str, float]], ylabel: str, title: str, *,
                      percent: bool = True, chance: Optional[float] = None,
                      n: Optional[SampleSize] = None):
    """Grouped bars: a group per model, a bar per measure (values[model][measure]), each
    labelled with its value; percent and chance as in plot_bars."""
    plt = _plt()
    models = list(values)
    measures = list(dict.fromkeys(m for v in values.values() for m in v))
    width = 0.8 / max(1, len(measures))
    scale = 100 if percent else 1
    fig, ax = plt.subplots(figsize=(2.0 + 0.5 * len(models) * len(measures), 3.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lowest, highest = 0.0, 100.0 if percent else 0.0
    for j, meas in enumerate(measures):
        xs = [i + (j - (len(measures) - 1) / 2) * width for i in range(len(models))]
        ys = [float(values[m].get(meas, float("nan"))) for m in models]
        hs = [0.0 if math.isnan(v) else v * scale for v in ys]
        lowest, highest = min([lowest] + hs), max([highest] + hs)
        color = colors[j % len(colors)]
        ax.bar(xs, hs, width, label=meas, color=color, edgecolor="black", linewidth=0.5)
        _bar_labels(ax, xs, ys, percent, False, color)
    ax.set_xticks(range(len(models)))
    long = max(map(len, models)) > 8
    ax.set_xticklabels(models, rotation=20 if long else 0, ha="right" if long else "center",
                       fontsize=8)
    ax.set_ylabel(ylabel + (" (%)" if percent else ""))
    ax.set_ylim(lowest * 1.15, highest * 1.25)
    _chance_line(ax, chance, percent)
    ax.legend(fontsize=7, ncol=min(4, len(measures) + (chance is not None)), loc="upper center")
    ax.set_title(_titled(title, n), fontsize=9)
    fig.tight_layout()
    return fig


def plot_corruption_accuracy(results: Dict[str, "CorruptionAccuracy"],  # noqa: F821 (one per model)
                             chance: Optional[float] = None):
    """One panel per corruption: accuracy (%) vs severity (0 = clean), a line per model."""
    plt = _plt()
    names = list(next(iter(results.values())).accuracy)
    cols = min(5, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.4 * rows + 0.6), squeeze=False,
                             sharey=True)
    for ax, c in zip(axes.flat, names):
        for model, res in results.items():
            ax.plot(range(len(res.accuracy[c]) + 1),
                    [100 * a for a in [res.clean] + res.accuracy[c]], marker="o", ms=3,
                    label=model)
        if chance is not None:
            ax.axhline(100 * chance, ls="--", lw=1, color="tab:red",
                       label=f"chance 1/{round(1 / chance)}")
        ax.set_title(c.replace("_", " "), fontsize=9)
        ax.set_xticks(range(len(next(iter(results.values())).accuracy[c]) + 1))
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7)
    sizes = sorted({r.n for r in results.values()})
    fig.suptitle(_titled("Accuracy under each corruption vs severity",
                         sizes[0] if len(sizes) == 1 else ", ".join(f"n = {s}" for s in sizes)),
                 fontsize=10)
    fig.supxlabel("severity (0 = clean)")
    fig.supylabel("accuracy (%)")
    fig.tight_layout()
    return fig


def corruption_section(report: Report, results: Dict[str, "CorruptionAccuracy"],  # noqa: F821
                       chance: Optional[float] = None) -> Report:
    """The per-corruption table (mean over severities, a column per model), its frost
    source line and its plot."""
    names = list(results)
    types = list(results[names[0]].accuracy)
    report.heading("Accuracy per corruption (mean over severities)")
    report.table(["corruption"] + names,
                 [[c] + [sum(results[n].accuracy[c]) / len(results[n].accuracy[c]) for n in names]
                  for c in types], n=_corruption_n(results))
    report.corruption_sources(results)
    return report.figure(plot_corruption_accuracy(results, chance), "corruptions",
                         "accuracy per corruption and severity")


def _corruption_n(results) -> SampleSize:
    sizes = sorted({r.n for r in results.values()})
    return sizes[0] if len(sizes) == 1 else "n = " + ", ".join(map(str, sizes))


def plot_robustness_curve(curve: "RobustnessCurve", title: str,  # noqa: F821
                          chance: Optional[float] = None):
    """Accuracy (%) against eps, a line per attack (and the worst case), from
    robustness_curve; the clean accuracy as a dotted line, the chance level dashed, n in
    the title."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    for name, acc in curve.accuracy.items():
        ax.plot(curve.eps, [100 * a for a in acc], marker="o", ms=4, label=name,
                lw=2 if name == "worst case" else 1.2)
    ax.axhline(100 * curve.clean, ls=":", lw=1, color="gray",
               label=f"clean {_pct(curve.clean)}")
    _chance_line(ax, chance, True)
    ax.set_xlabel(f"eps ({curve.norm})")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(_titled(title, curve.n), fontsize=9)
    fig.tight_layout()
    return fig


def robustness_curve_section(report: Report, curve: "RobustnessCurve",  # noqa: F821
                             chance: Optional[float] = None, what: str = "") -> Report:
    """The robustness curve: a table (eps, accuracy % per attack, n) and its plot.
    what: names the model and data in the plot's title."""
    report.heading("Robustness curve: accuracy against eps")
    report.table(["eps", *(f"{name} accuracy" for name in curve.accuracy), "n"], curve.rows(),
                 n=curve.n)
    title = "Accuracy against eps" + (f", {what}" if what else "")
    return report.figure(plot_robustness_curve(curve, title, chance), "robustness_curve",
                         f"accuracy (%) against eps ({curve.norm}), n = {curve.n}")


def plot_image_grid(images: Tensor, titles: Optional[Sequence[str]] = None, cols: int = 8,
                    cmap: Optional[str] = None, title: str = "Example images"):
    """Images (N, C, H, W) in [0, 1] (C = 1 or 3; 1-channel maps drawn with `cmap`), a
    title over the grid and optional titles per image."""
    plt = _plt()
    n = images.shape[0]
    cols = min(cols, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.5 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = images[i].detach().float().cpu()
        if img.shape[0] == 1:
            ax.imshow(img[0].numpy(), cmap=cmap or "gray")
        else:
            ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
    fig.suptitle(_titled(title, None), fontsize=9)
    fig.tight_layout()
    return fig
