"""The robustness curve (accuracy against eps, from robust_mask_multi_eps): its numbers
against one robust_accuracy run per eps, its plot and table, and the eval report."""
import pytest
import torch

from robustops.attacks import APGD, PGD, AutoAttack
from robustops.eval import robust_accuracy
from robustops.eval.eval_report import write_eval_report
from robustops.eval.report import Report, figure_texts, plot_robustness_curve, \
    robustness_curve_section
from robustops.eval.robustness_curve import (WORST_CASE, RobustnessCurve, default_curve_eps,
                                             robustness_curve)

EPS = [0.0, 0.05, 0.1, 0.2]


def _pgd(model, eps=0.1):
    # alpha follows eps (2.5 * eps / steps per sample), so each point is PGD at that eps.
    return PGD(model, eps=eps, steps=5, seed=3)


def test_each_point_is_robust_accuracy_at_that_eps(digits_model):
    model, x, y = digits_model
    data = (x[:120], y[:120])
    curve = robustness_curve(model, data, {"PGD": _pgd(model)}, EPS, batch_size=50)
    assert curve.n == 120 and curve.eps == EPS and list(curve.accuracy) == ["PGD"]
    for e, acc in zip(EPS, curve.accuracy["PGD"]):
        ref = robust_accuracy(model, data, [_pgd(model, e)], batch_size=50, progress=False)
        assert acc == ref.worst_case, e  # same starts (keyed by sample index), same steps
        assert curve.clean == pytest.approx(ref.clean)
    # eps 0 moves nothing: the clean accuracy; a larger ball loses samples.
    assert curve.accuracy["PGD"][0] == curve.clean
    assert curve.accuracy["PGD"][-1] < curve.clean


def test_worst_case_over_several_attacks(digits_model):
    model, x, y = digits_model
    attacks = {"PGD": _pgd(model), "APGD": APGD(model, steps=5, seed=3)}
    curve = robustness_curve(model, (x[:60], y[:60]), attacks, EPS, batch_size=30)
    assert list(curve.accuracy) == ["PGD", "APGD", WORST_CASE]
    for i in range(len(EPS)):
        assert curve.accuracy[WORST_CASE][i] <= min(curve.accuracy["PGD"][i],
                                                    curve.accuracy["APGD"][i])


@pytest.mark.parametrize("eps,match", [([], "eps_values is empty"),
                                       ([0.1, 0.05], "must increase"),
                                       ([0.0, -0.1], "finite number >= 0")])
def test_bad_eps_values(digits_model, eps, match):
    model, x, y = digits_model
    with pytest.raises(ValueError, match=match):
        robustness_curve(model, (x[:8], y[:8]), _pgd(model), eps)


def test_suite_attacks_are_refused(digits_model):
    model, x, y = digits_model
    with pytest.raises(TypeError, match="does not take a per-sample eps"):
        robustness_curve(model, (x[:8], y[:8]), AutoAttack(model, eps=0.1), EPS)


def test_default_eps_values():
    assert default_curve_eps(0.1) == pytest.approx([0, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2])
    with pytest.raises(ValueError, match="eps is 0"):
        default_curve_eps(0.0)


def _curve():
    return RobustnessCurve(n=200, eps=[0.0, 0.1, 0.2], clean=0.9, norm="linf",
                           accuracy={"PGD": [0.9, 0.4, 0.05], WORST_CASE: [0.9, 0.3, 0.0]})


def test_plot_is_titled_with_n_axes_in_percent_and_chance_line():
    fig = plot_robustness_curve(_curve(), "Accuracy against eps, mlp on digits", chance=0.1)
    texts = figure_texts(fig)
    title = fig.axes[0].get_title()
    assert title.startswith("Accuracy against eps, mlp on digits") and "n = 200" in title
    assert "accuracy (%)" in texts and "eps (linf)" in texts
    assert any(t.startswith("chance 1/10 = 10.0%") for t in texts)
    assert "clean 90.0%" in texts
    # Drawn in percent: the PGD line's points are 90, 40, 5.
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    assert list(lines["PGD"].get_ydata()) == pytest.approx([90, 40, 5])
    assert fig.axes[0].get_ylim() == (0, 100)


def test_plot_needs_a_title():
    with pytest.raises(ValueError, match="needs a title"):
        plot_robustness_curve(_curve(), " ")


def test_section_has_table_with_eps_percent_and_n(tmp_path):
    r = Report(tmp_path, "t")
    robustness_curve_section(r, _curve(), chance=0.1, what="mlp on digits")
    text = r.write().read_text()
    assert "| eps | PGD accuracy | worst case accuracy | n |" in text
    assert "| 0.1 | 40.0% | 30.0% | 200 |" in text and "| 0.2 | 5.0% | 0.0% | 200 |" in text
    assert "*n = 200*" in text
    assert "![" in text and (tmp_path / "robustness_curve.png").stat().st_size > 1000


def test_eval_report_holds_accuracy_and_curve(tmp_path, digits_model):
    model, x, y = digits_model
    data = (x[:40], y[:40])
    res = robust_accuracy(model, data, {"PGD-5": _pgd(model)}, progress=False)
    curve = robustness_curve(model, data, {"PGD-5": _pgd(model)}, EPS)
    path = write_eval_report(tmp_path, res, curve, what="mlp on digits test", eps=0.1,
                             norm="linf", num_classes=10)
    text = path.read_text()
    assert text.startswith("# Robust accuracy of mlp on digits test")
    assert f"| PGD-5 | {100 * res.per_attack['PGD-5']:.1f}% |" in text
    assert "Robustness curve: accuracy against eps" in text
    assert f"| 0.1 | {100 * curve.accuracy['PGD-5'][2]:.1f}% | 40 |" in text
    assert (tmp_path / "robustness_curve.png").exists()
    # A model at chance gets the report's warning.
    torch.manual_seed(0)
    blind = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    with torch.no_grad():
        blind[1].weight.zero_()
        blind[1].bias.zero_()
    res = robust_accuracy(blind, data, {"PGD": _pgd(blind)}, progress=False, checks="off")
    text = write_eval_report(tmp_path / "blind", res, None, what="blind", eps=0.1, norm="linf",
                             num_classes=10).read_text()
    assert "is at chance" in text and "Robustness curve" not in text
