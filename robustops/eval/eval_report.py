"""The report `robustops eval --report DIR` writes: robust accuracy per attack and the
robustness curve (accuracy against eps), as DIR/report.md with DIR/robustness_curve.png."""
from __future__ import annotations

import os
import pathlib
from typing import Optional

from .report import Report, format_value, robustness_curve_section
from .robust_accuracy import RobustAccuracy
from .robustness_curve import RobustnessCurve


def write_eval_report(folder: os.PathLike, result: RobustAccuracy,
                      curve: Optional[RobustnessCurve], *, what: str, eps: float, norm: str,
                      num_classes: Optional[int] = None) -> pathlib.Path:
    """Write folder/report.md: the robust-accuracy table (n stated), a warning when the
    clean accuracy is at chance (num_classes known), and the robustness curve (table and
    plot) when given. what: the model and data, e.g. 'small_cnn on mnist test'. Returns
    the report's path."""
    r = Report(folder, f"Robust accuracy of {what}")
    r.text(f"Threat model: {norm}, eps {eps:g}.")
    r.heading(f"Robust accuracy at eps {eps:g}")
    rows = [["clean", f"{100 * result.clean:.1f}%", format_value(result.seconds.get("clean", 0.0))]]
    rows += [[name, f"{100 * acc:.1f}%", format_value(result.seconds.get(name, 0.0))]
             for name, acc in result.per_attack.items()]
    rows.append(["worst case", f"{100 * result.worst_case:.1f}%", ""])
    r.table(["attack", "accuracy", "seconds"], rows, n=result.n)
    chance = None
    if num_classes:
        chance = 1.0 / num_classes
        r.chance_warnings({what: result.clean}, n=result.n, num_classes=num_classes)
    if curve is not None:
        robustness_curve_section(r, curve, chance, what)
    return r.write()
