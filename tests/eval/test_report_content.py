"""Report contents: titles, percentages, chance lines and warnings, visible zero bars,
readable labels, sample sizes in every table, uniform precision, the frost source.

Reports are generated from tiny fake results (no training), by the same functions the
studies and the quickstart call; figures are inspected as matplotlib objects before they
are saved, and the saved PNGs must exist.
"""
import math
import re

import pytest
import torch

from robustops.eval import report as report_mod
from robustops.eval.corruption_benchmark import CorruptionAccuracy, corruption_accuracy
from robustops.eval.corruptions import frost as frost_mod
from robustops.eval.report import (CHANCE_Z, Report, at_chance, chance_margin, figure_texts,
                                   plot_bars, plot_grouped_bars)

NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


@pytest.fixture
def captured(monkeypatch):
    """{figure name: figure object} of every figure a report saves (inspected before saving)."""
    figures = {}
    original = Report.figure

    def figure(self, fig, name, caption=""):
        fig.canvas.draw()  # lay out, so text extents are final
        figures[name] = {"texts": figure_texts(fig), "overlap": _tick_label_overlap(fig),
                         "zero_markers": _zero_markers(fig)}
        return original(self, fig, name, caption)

    monkeypatch.setattr(Report, "figure", figure)
    return figures


def _tick_label_overlap(fig) -> bool:
    """True when two tick labels of one axis overlap on the rendered figure."""
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
            boxes = [t.get_window_extent(renderer) for t in labels if t.get_text()]
            for i in range(len(boxes)):
                for j in range(i + 1, len(boxes)):
                    if boxes[i].overlaps(boxes[j]):
                        return True
    return False


def _zero_markers(fig) -> int:
    """Markers drawn at value 0 (the visible stand-in of a zero-height bar)."""
    count = 0
    for ax in fig.axes:
        for line in ax.get_lines():
            if line.get_marker() in ("_", "|"):
                count += 1
    return count


def _tables(markdown: str):
    """(header line, rows, the first non-empty line after the table) for each table."""
    lines = markdown.splitlines()
    out, i = [], 0
    while i < len(lines):
        if lines[i].startswith("|"):
            start = i
            while i < len(lines) and lines[i].startswith("|"):
                i += 1
            after = next((ln for ln in lines[i:] if ln.strip()), "")
            rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[start + 2:i]]
            out.append((lines[start], rows, after))
        i += 1
    return out


def _check_tables(markdown: str) -> int:
    """Every table: followed by its sample size, floats with one precision; returns the count."""
    tables = _tables(markdown)
    for header, rows, after in tables:
        assert re.match(r"^\*n[ :=]", after), f"table {header!r} has no sample size: {after!r}"
        for row in rows:
            for cell in row[1:]:
                if NUMBER.match(cell) and "." in cell:
                    decimals = len(cell.split(".")[1])
                    assert decimals == report_mod.FLOAT_DIGITS, f"{cell!r} in {header!r}"
    return len(tables)


# ---------------------------------------------------------------- building blocks


def test_table_requires_sample_size_and_formats_uniformly(tmp_path):
    r = Report(tmp_path, "t")
    with pytest.raises(TypeError):
        r.table(["a"], [[1.0]])                                # n is required
    with pytest.raises(TypeError, match="n must be"):
        r.table(["a"], [[1.0]], n=1.5)
    r.table(["measure", "m"], [["acc", 0.5], ["tiny", 1 / 3], ["big", 123.456789],
                               ["none", float("nan")], ["count", 7]], n=64)
    r.table(["m"], [[0.25]], n={"clean": 400, "corruptions": 96})
    text = r.write().read_text()
    assert "| acc | 0.500 |" in text and "| tiny | 0.333 |" in text
    assert "| big | 123.457 |" in text and "| none | n/a |" in text and "| count | 7 |" in text
    assert "*n = 64*" in text and "*n: clean 400, corruptions 96*" in text
    assert _check_tables(text) == 2


def test_chance_definition():
    # K = 10, n = 100: chance 0.1, margin 2 * sqrt(0.1 * 0.9 / 100) = 0.06.
    assert chance_margin(100, 10) == pytest.approx(CHANCE_Z * math.sqrt(0.09 / 100))
    assert at_chance(0.15, 100, 10) and at_chance(0.0, 100, 10)      # below chance counts
    assert not at_chance(0.17, 100, 10)
    assert not at_chance(0.15, 10000, 10)                           # more images, finer test
    assert at_chance(0.5, 30, 2) and not at_chance(0.8, 30, 2)


def test_chance_warning_lines(tmp_path):
    r = Report(tmp_path, "t")
    flagged = r.chance_warnings({"good": 0.9, "chance": 0.12, "broken": 0.0}, n=100,
                                num_classes=10)
    assert flagged == ["chance", "broken"]
    text = r.write().read_text()
    assert "**Warning: `chance` is at chance.**" in text
    assert "`broken` is at chance" in text and "`good`" not in text
    assert "(n = 100)" in text and "1/10 = 0.100" in text and "(0.060)" in text


def test_plot_bars_title_percent_chance_and_zero_bar():
    fig = plot_bars({"standard": 0.8125, "pgd": 0.0, "odd": float("nan")}, "accuracy",
                    "Clean accuracy", chance=0.1, n=64)
    texts = figure_texts(fig)
    assert "Clean accuracy (n = 64)" in texts
    assert {"81.2%", "0.0%", "n/a"} <= set(texts)
    assert "chance 1/10 = 10.0%" in texts and "accuracy (%)" in texts
    assert _zero_markers(fig) == 2                                # the zero bar and the NaN one
    ax = fig.axes[0]
    assert ax.get_ylim()[1] >= 100                                # a 0-100% axis
    with pytest.raises(ValueError, match="title"):
        plot_bars({"a": 0.5}, "accuracy", "")


def test_plot_bars_counts_and_long_labels_do_not_overlap():
    values = {f"pgd_trained {fam} {i}": float(i) for i in range(4) for fam in ("shape", "texture")}
    fig = plot_bars(values, "units", "Dissection units", percent=False)
    fig.canvas.draw()
    assert not _tick_label_overlap(fig)
    texts = figure_texts(fig)
    assert "0" in texts and "3" in texts and "units" in texts      # counts, not percentages
    assert not any(t.endswith("%") for t in texts)


def test_grouped_bars_labelled():
    fig = plot_grouped_bars({"standard": {"clean": 0.5, "PGD": 0.0},
                             "pgd_trained": {"clean": 0.4, "PGD": 0.3}}, "value", "Summary",
                            chance=0.25, n=32)
    texts = figure_texts(fig)
    assert "Summary (n = 32)" in texts and "chance 1/4 = 25.0%" in texts
    assert {"50.0%", "0.0%", "40.0%", "30.0%"} <= set(texts)
    assert _zero_markers(fig) == 1


# ---------------------------------------------------------------- whole reports


def _corr(clean, per, n=16, frost=True, source="imagecorruptions"):
    names = ("gaussian_noise", "frost") if frost else ("gaussian_noise",)
    acc = {c: [per] * 5 for c in names}
    return CorruptionAccuracy(clean=clean, accuracy=acc, n=n,
                              sources={"frost": source} if frost else {})


def test_tenet_report(tmp_path, captured):
    from robustops.studies import tenet

    corr = {"ce_full": _corr(0.5, 0.3), "tenet_full": _corr(0.55, 0.0),
            "ce_10pct": _corr(0.09, 0.1), "tenet_10pct": _corr(0.3, 0.2)}
    results = {name: {"clean_accuracy": c.clean, "corruption_mean_accuracy": c.mean(),
                      "corruption_per_type": {k: sum(v) / 5 for k, v in c.accuracy.items()},
                      "train_seconds": 12.5} for name, c in corr.items()}
    tenet._write_report(tmp_path, results, corr, 128, 64, 1, 3, 0.2, 32, 10)
    text = (tmp_path / "report.md").read_text()
    assert _check_tables(text) == 2
    assert "*n: test images 32, images per corruption 16*" in text
    # ce_10pct (0.09) is at chance for n = 32, K = 10; tenet_10pct (0.3 > 0.1 + 0.106) not.
    assert "`ce_10pct` is at chance" in text and "`tenet_10pct` is at chance" not in text
    assert "Frost source: the reference frost photographs of the imagecorruptions" in text
    mean = captured["corruption_mean"]["texts"]
    assert "Mean accuracy over corruptions and severities (n = 16)" in mean
    assert not any("see the table" in t for t in mean)
    assert "0.0%" not in mean or captured["corruption_mean"]["zero_markers"] >= 1
    assert "Clean accuracy (n = 32)" in captured["clean_accuracy"]["texts"]
    assert "chance 1/10 = 10.0%" in captured["clean_accuracy"]["texts"]
    corr_fig = captured["corruptions"]["texts"]
    assert "Accuracy under each corruption vs severity (n = 16)" in corr_fig
    assert "accuracy (%)" in corr_fig and "chance 1/10" in corr_fig
    for name in ("clean_accuracy", "corruption_mean", "corruptions"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
        assert f"]({name}.png)" in text
        assert not captured[name]["overlap"], name


def test_shape_study_report_dissection_readable(tmp_path, captured):
    from types import SimpleNamespace

    from robustops.studies import shape_bias_at

    neurons = dict(layer="features.8", units=64, both_correct_images=20, selectivity_mean=0.2,
                   selectivity_median=0.1, shape_units=0, texture_units=12, unlabelled_units=52,
                   mean_best_iou=0.05, accuracy_without_shape_units=0.5,
                   accuracy_without_texture_units=0.4)
    results = {name: {"clean_accuracy": acc, "shape_bias": sb, "silhouette_accuracy": 0.3,
                      "texture_only_accuracy": 0.4, "corruption_mean_accuracy": 0.3,
                      "pgd10_accuracy": 0.0, "train_seconds": 3.0,
                      "tv_normalized": {"features.2": 0.7},
                      "tv_normalized_noisy": {"features.2": 0.9},
                      "neurons": neurons}
               for name, acc, sb in (("standard", 0.95, 0.3), ("pgd_trained", 0.2, 0.0))}
    corr = {"standard": _corr(0.95, 0.5, frost=False), "pgd_trained": _corr(0.2, 0.2, frost=False)}
    conflict = SimpleNamespace(images=torch.rand(40, 3, 16, 16),
                               shape_labels=torch.zeros(40, dtype=torch.long),
                               texture_labels=torch.ones(40, dtype=torch.long))
    shape_bias_at._write_report(tmp_path, results, corr, conflict, ["circle", "square", "star",
                                                                   "cross"], ["dots", "stripes"],
                                4 / 255)
    text = (tmp_path / "report.md").read_text()
    assert _check_tables(text) == 3
    assert "`pgd_trained` is at chance" in text and "`standard` is at chance" not in text
    assert "Frost source" not in text                             # no frost measured
    units = captured["dissection_units"]
    assert not units["overlap"]
    assert units["zero_markers"] == 2                             # 0 shape units, twice
    assert any(t.startswith("Dissection: units labelled") for t in units["texts"])
    assert "Shape bias on cue-conflict images (n = 40)" in captured["shape_bias"]["texts"]
    assert "0.0%" in captured["shape_bias"]["texts"]
    assert "Cue-conflict images (shape / texture)" in captured["cue_conflict_examples"]["texts"]
    for name, fig in captured.items():
        assert (tmp_path / f"{name}.png").exists()
        assert not fig["overlap"], name


def test_quickstart_report_warns_about_chance(tmp_path, captured):
    from robustops import quickstart

    done = {"v1": {m: {"clean_accuracy": acc, "corruption_mean_accuracy": 0.1, "n_test": 64,
                       "n_corruption": 16, "num_classes": 10}
                   for m, acc in (("gabor", 0.11), ("ensemble", 0.6))},
            "parts": {m: {"clean_accuracy": 0.3, "pgd_accuracy": 0.0,
                          "corruption_mean_accuracy": 0.2, "spurious_gap": -0.0625}
                      for m in ("part_clean", "cnn_clean")}}          # an older run: no n
    quickstart.write_report(tmp_path, done, {"v1": 10.0, "parts": 20.0}, "cpu")
    text = (tmp_path / "report.md").read_text()
    assert _check_tables(text) == 2
    assert "*n: test images 64, images per corruption 16*" in text
    assert "*n: not recorded (results of an earlier robustops)*" in text
    assert "`gabor` is at chance" in text and "`ensemble` is at chance" not in text
    v1 = captured["v1_summary"]["texts"]
    assert any(t.replace("\n", " ").startswith(quickstart.FAMILIES["v1"].title) for t in v1)
    assert "chance 1/10 = 10.0%" in v1 and "11.0%" in v1
    assert captured["parts_summary"]["zero_markers"] == 2         # PGD 0.0 for both models
    assert (tmp_path / "v1_summary.png").exists() and (tmp_path / "parts_summary.png").exists()


# ---------------------------------------------------------------- frost source


class _Constant(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return torch.zeros(x.shape[0], 2) + self.w


def test_corruption_accuracy_records_frost_source(tmp_path, fresh_frost):
    x, y = torch.rand(4, 3, 16, 16), torch.zeros(4, dtype=torch.long)
    model = _Constant()
    fresh_frost.setattr(frost_mod, "_frost_dir", lambda: None)     # imagecorruptions absent
    with pytest.raises(ImportError, match="pip install imagecorruptions"):
        corruption_accuracy(model, (x, y), corruptions=["frost"], progress=False)
    assert model.calls == 0                                         # refused before any work
    assert corruption_accuracy(model, (x, y), corruptions=["contrast"], severities=[1],
                               progress=False).sources == {}
    fresh_frost.setenv(frost_mod.SOURCE_ENV, "procedural")
    res = corruption_accuracy(model, (x, y), corruptions=["frost"], severities=[1],
                              progress=False)
    assert res.sources == {"frost": "procedural"} and res.accuracy["frost"] == [1.0]
    r = Report(tmp_path, "t")
    report_mod.corruption_section(r, {"m": res}, chance=0.5)
    text = r.write().read_text()
    assert "Frost source: the procedural stand-in textures (asked for; not the reference" in text
    assert _check_tables(text) == 1
    # Results saved before sources were recorded still load and say so.
    old = CorruptionAccuracy(**{k: v for k, v in res.to_dict().items() if k != "sources"})
    assert report_mod.corruption_source_lines({"m": old}) == [
        "Frost source: not recorded (results measured before sources were recorded)."]
