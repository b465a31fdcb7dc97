"""Attack options read from configs: [model] mean/std through a TOML file (the same as
--mean/--std), in training as in evaluation, and the eval report's robustness curve
([eval] report, curve_eps)."""
import json
import pathlib

import pytest
import torch

from robustops import cli, config
from robustops.attacks import APGD, PGD
from robustops.config import ConfigError
from robustops.nn import Normalize

HERE = pathlib.Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _factory_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))  # tests/byom_factory.py, as a user's package


def _toml(path, text):
    path.write_text(text)
    return str(path)


def _byom_eval(tmp_path, capsys, *extra):
    import byom_factory

    weights = tmp_path / "w.pt"
    torch.save(byom_factory.build().state_dict(), weights)
    out = tmp_path / f"res{len(list(tmp_path.glob('res*.json')))}.json"
    argv = ["eval", "--model", "byom_factory:build", "--dataset", "byom_factory:test_set",
            "--weights", str(weights), "--eps", "2/255", "--steps", "2", "--samples", "40",
            "--batch-size", "16", "--json", str(out), *extra]
    assert cli.main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    return json.loads(out.read_text())


def test_mean_std_in_a_config_file_equal_the_flags(tmp_path, capsys):
    import byom_factory

    file = _toml(tmp_path / "norm.toml", "[model]\nmean = %s\nstd = %s\n"
                 % (list(byom_factory.MEAN), list(byom_factory.STD)))
    from_file = _byom_eval(tmp_path, capsys, "--config", file)
    from_flags = _byom_eval(tmp_path, capsys, "--mean", ",".join(map(str, byom_factory.MEAN)),
                            "--std", ",".join(map(str, byom_factory.STD)))
    # The labels are the normalised model's own predictions: wrapped right, all correct.
    assert from_file["clean"] == 1.0
    assert {k: from_file[k] for k in ("n", "clean", "worst_case", "per_attack")} == \
        {k: from_flags[k] for k in ("n", "clean", "worst_case", "per_attack")}
    assert _byom_eval(tmp_path, capsys)["clean"] < 0.6  # without: other inputs


def test_normalized_model_wraps_only_when_set():
    model = torch.nn.Linear(3, 2)
    cfg = config.load(None, [("model", "mean", "0.5,0.4,0.3", "--mean"),
                             ("model", "std", "0.2", "--std")])
    wrapped = config.normalized_model(cfg, model, channels=3)
    assert isinstance(wrapped.normalize, Normalize) and wrapped.model is model
    assert config.normalized_model(config.load(None), model, 3) is model
    with pytest.raises(ConfigError, match="mean has 3 values but the images have 1 channels"):
        config.normalized_model(cfg, model, channels=1)
    bad = config.load(None, [("model", "mean", "0.5", "--mean"), ("model", "std", "0", "--std")])
    with pytest.raises(ConfigError, match=r"\[model\] mean/std: .*std must be > 0"):
        config.normalized_model(bad, model)


def test_train_with_mean_std_trains_the_wrapped_model(tmp_path, capsys, monkeypatch):
    # The Trainer (and so the objective's attacks and the evaluation's) gets the model
    # behind Normalize; its weights load back into the bare model for `robustops eval`.
    pytest.importorskip("sklearn")
    from robustops.train import Trainer

    seen = {}

    def fit(self):
        seen["model"] = self.model
        return {}

    monkeypatch.setattr(Trainer, "fit", fit)
    # One number (not a list) stands for every channel.
    file = _toml(tmp_path / "t.toml", '[data]\ndataset = "digits"\n[model]\nmean = 0.3\n'
                 'std = [0.25]\n[optim]\nepochs = 1\n')
    assert cli.main(["train", "--config", file, "--out", str(tmp_path / "run")]) == 0
    model = seen["model"]
    assert isinstance(model.normalize, Normalize)
    assert model.normalize.mean.tolist() == [0.3] and model.normalize.std.tolist() == [0.25]
    x = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(model(x), model.model((x - 0.3) / 0.25))


def test_eval_report_with_curve_from_the_config(tmp_path, capsys):
    import byom_factory

    report = tmp_path / "report"
    file = _toml(tmp_path / "r.toml", "[model]\nmean = %s\nstd = %s\n[eval]\nreport = '%s'\n"
                 "curve_eps = ['0', '1/255', '4/255']\n"
                 % (list(byom_factory.MEAN), list(byom_factory.STD), report))
    res = _byom_eval(tmp_path, capsys, "--config", file)
    text = (report / "report.md").read_text()
    assert "# Robust accuracy of byom_factory:build on byom_factory:test_set test" in text
    assert f"| worst case | {100 * res['worst_case']:.1f}% |" in text
    assert "| eps | PGD-2x1 accuracy | n |" in text
    # The clean point of the curve is the clean accuracy, n as evaluated.
    assert "| 0 | 100.0% | 40 |" in text and "| 0.0156863 |" in text
    assert (report / "robustness_curve.png").stat().st_size > 1000


def test_curve_eps_and_curve_attacks():
    cfg = config.load(None, [("eval", "eps", "0.1", "--eps")])
    assert config.curve_eps(cfg) == pytest.approx([0, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2])
    cfg = config.load(None, [("eval", "eps", "0.1", "--eps"),
                             ("eval", "curve_eps", "0.2,0.1", "--curve-eps")])
    with pytest.raises(ConfigError, match=r"\[eval\] curve_eps must be increasing"):
        config.curve_eps(cfg)
    model = torch.nn.Linear(3, 2)
    cfg = config.load(None, [("eval", "eps", "0.1", "--eps"),
                             ("eval", "attack", "autoattack", "--attack")])
    (atk,) = config.build_curve_attacks(cfg, model).values()
    assert type(atk) is APGD and atk.steps == 100
    cfg = config.load(None, [("eval", "eps", "0.1", "--eps"),
                             ("eval", "attack", "pgd+apgd", "--attack")])
    assert [type(a) for a in config.build_curve_attacks(cfg, model).values()] == [PGD, APGD]
