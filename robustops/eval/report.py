"""Markdown reports with PNG plots, shared by every evaluation.

`Report(folder)` collects headings, text, tables and figures and writes
folder/report.md (atomically) with the PNGs beside it. The plot helpers draw
the standard figures: accuracy per corruption and severity, shape-bias bars,
grids of example images (corrupted images, attribution maps).
"""
from __future__ import annotations

import os
import pathlib
from typing import Dict, List, Optional, Sequence

from torch import Tensor


def _plt():
    import matplotlib
    matplotlib.use("Agg")  # files only: no display on these machines
    import matplotlib.pyplot as plt
    return plt


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

    def table(self, headers: Sequence[str], rows: Sequence[Sequence]) -> "Report":
        fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
        self.lines.append("| " + " | ".join(headers) + " |")
        self.lines.append("|" + "---|" * len(headers))
        for r in rows:
            self.lines.append("| " + " | ".join(fmt(v) for v in r) + " |")
        self.lines.append("")
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


def plot_corruption_accuracy(results: Dict[str, "CorruptionAccuracy"]):  # noqa: F821 (a CorruptionAccuracy per model)
    """One panel per corruption: accuracy vs severity (0 = clean), a line per model."""
    plt = _plt()
    names = list(next(iter(results.values())).accuracy)
    cols = min(5, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.4 * rows), squeeze=False,
                             sharey=True)
    for ax, c in zip(axes.flat, names):
        for model, res in results.items():
            ax.plot(range(6), [res.clean] + res.accuracy[c], marker="o", ms=3, label=model)
        ax.set_title(c.replace("_", " "), fontsize=9)
        ax.set_xticks(range(6))
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7)
    fig.supxlabel("severity (0 = clean)")
    fig.supylabel("accuracy")
    fig.tight_layout()
    return fig


def corruption_section(report: Report, results: Dict[str, "CorruptionAccuracy"]) -> Report:  # noqa: F821
    """The per-corruption table (mean over severities, a column per model) and its plot."""
    names = list(results)
    types = list(results[names[0]].accuracy)
    report.heading("Accuracy per corruption (mean over severities)")
    report.table(["corruption"] + names,
                 [[c] + [sum(results[n].accuracy[c]) / len(results[n].accuracy[c]) for n in names]
                  for c in types])
    return report.figure(plot_corruption_accuracy(results), "corruptions",
                         "accuracy per corruption and severity")


def plot_bars(values: Dict[str, float], ylabel: str, title: str = "", ylim=(0, 1)):
    """One bar per model (e.g. shape bias, mean corruption accuracy)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(values), 3))
    bars = ax.bar(list(values), list(values.values()), color="tab:blue")
    for b, v in zip(bars, values.values()):
        ax.text(b.get_x() + b.get_width() / 2, v, f"{v:.3g}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel(ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_grouped_bars(values: Dict[str, Dict[str, float]], ylabel: str, title: str = "",
                      ylim=(0, 1)):
    """Grouped bars: a group per model, a bar per measure (values[model][measure])."""
    plt = _plt()
    models = list(values)
    measures = list(dict.fromkeys(m for v in values.values() for m in v))
    width = 0.8 / max(1, len(measures))
    fig, ax = plt.subplots(figsize=(1.5 + 0.45 * len(models) * len(measures), 3.2))
    for j, meas in enumerate(measures):
        xs = [i + (j - (len(measures) - 1) / 2) * width for i in range(len(models))]
        ys = [values[m].get(meas, float("nan")) for m in models]
        ax.bar(xs, ys, width, label=meas)
    ax.set_xticks(range(len(models)))
    ax.set_xticklabels(models, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    ax.legend(fontsize=7, ncol=min(4, len(measures)))
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_image_grid(images: Tensor, titles: Optional[Sequence[str]] = None, cols: int = 8,
                    cmap: Optional[str] = None):
    """Images (N, C, H, W) in [0, 1] (C = 1 or 3; 1-channel maps drawn with `cmap`)."""
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
    fig.tight_layout()
    return fig
