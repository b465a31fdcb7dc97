"""`robustops eval` on the user's own model, weights and data: --model / --dataset
package.module:factory, .pt checkpoints, --mean/--std, --image-key/--label-key, --stem."""
import json
import pathlib

import pytest
import torch

from robustops import cli, config

HERE = pathlib.Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _factory_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))  # tests/byom_factory.py, as a user's package


def _fails(capsys, argv):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def _weights(tmp_path, form="ddp"):
    import byom_factory

    sd = byom_factory.build().state_dict()
    path = tmp_path / "w.pt"
    if form == "ddp":  # RobustBench / DDP style: nested and prefixed
        torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 9}, path)
    else:
        torch.save(sd, path)
    return path


def _eval(tmp_path, capsys, *extra):
    out = tmp_path / "res.json"
    base = ["eval", "--model", "byom_factory:build", "--dataset", "byom_factory:test_set",
            "--weights", str(_weights(tmp_path)), "--eps", "2/255", "--steps", "2",
            "--samples", "40", "--batch-size", "16", "--json", str(out)]
    assert cli.main(base + list(extra)) == 0, capsys.readouterr().err
    capsys.readouterr()
    return json.loads(out.read_text())


def test_own_model_dataset_and_pt_weights_evaluated_in_pixel_space(tmp_path, capsys):
    import byom_factory
    from robustops.attacks import PGD
    from robustops.eval import robust_accuracy
    from robustops.nn import normalized

    mean, std = ",".join(map(str, byom_factory.MEAN)), ",".join(map(str, byom_factory.STD))
    res = _eval(tmp_path, capsys, "--mean", mean, "--std", std, "--image-key", "img",
                "--label-key", "target")
    # The labels are the normalised model's predictions: evaluated right, all are correct.
    assert res["n"] == 40 and res["clean"] == 1.0
    # The same numbers as the Python API on the wrapped model.
    net = normalized(byom_factory.build(), byom_factory.MEAN, byom_factory.STD).eval()
    x, y = byom_factory.images()
    eps = 2 / 255
    ref = robust_accuracy(net, (x[:40], y[:40]), [PGD(net, eps=eps, steps=2, alpha=2.5 * eps / 2)],
                          batch_size=16, progress=False)
    assert res["worst_case"] == pytest.approx(ref.worst_case)
    # Without the normalisation the model sees other inputs: much lower accuracy.
    raw = _eval(tmp_path, capsys)  # default keys find "img" and "target" too
    assert raw["clean"] < 0.6


def test_dataset_factory_returning_a_dataloader(tmp_path, capsys):
    import byom_factory

    res = _eval(tmp_path, capsys, "--dataset", "byom_factory:test_loader", "--mean",
                ",".join(map(str, byom_factory.MEAN)), "--std", "0.1,0.2,0.3")
    assert res["n"] == 40 and res["clean"] == 1.0


def test_factory_without_num_classes_and_plain_state_dict(tmp_path, capsys):
    res = _eval(tmp_path, capsys, "--model", "byom_factory:build_without_arguments",
                "--weights", str(_weights(tmp_path, "plain")))
    assert res["n"] == 40


@pytest.mark.parametrize("model, expected", [
    ("byom_factory:missing", "module byom_factory has no attribute 'missing' (its callables: "),
    ("no_such_package.models:build", "no module named 'no_such_package'"),
    ("byom_factory:not_a_model", "returned a str, not an nn.Module"),
    ("byom_factory:needs_width", "cannot be called with no arguments (missing a required "
                                 "argument: 'width')"),
    ("byom_factory:NOT_CALLABLE", "is a int, not a callable"),
    ("byom_factory:", "or a package.module:factory of your own"),
])
def test_bad_model_factories_fail_in_one_line(tmp_path, capsys, model, expected):
    err = _fails(capsys, ["eval", "--model", model, "--dataset", "byom_factory:test_set",
                          "--weights", str(_weights(tmp_path))])
    assert expected in err, err


def test_bad_keys_normalisation_and_weights_fail_in_one_line(tmp_path, capsys):
    base = ["eval", "--model", "byom_factory:build", "--dataset", "byom_factory:test_set",
            "--weights", str(_weights(tmp_path))]
    err = _fails(capsys, base + ["--image-key", "pixels"])
    assert "without image_key 'pixels'; its keys are 'img', 'target', 'id'" in err
    assert "--image-key" in err
    assert "--mean and --std go together" in _fails(capsys, base + ["--mean", "0.5"])
    err = _fails(capsys, base + ["--mean", "0.5,0.5", "--std", "0.2"])
    assert "mean has 2 values but the images have 3 channels" in err
    assert "std must be > 0" in _fails(capsys, base + ["--mean", "0.5", "--std", "0"])
    assert "must be numbers" in _fails(capsys, base + ["--mean", "a,b", "--std", "1"])
    full = tmp_path / "full.pt"
    import byom_factory

    torch.save(byom_factory.build(), full)
    err = _fails(capsys, base[:-1] + [str(full)])
    assert "a full pickled model object" in err


def test_stem_option_replaces_the_forced_cifar_stem():
    def conv1(*flags):
        cfg = config.load(None, [("model", "name", "resnet18", "--model"),
                                 ("data", "dataset", "digits", "--dataset"), *flags])
        return config.build_model(cfg, {"in_channels": 1, "image_size": 16,
                                        "num_classes": 10}).conv1.kernel_size

    assert conv1() == (3, 3)  # auto: the CIFAR stem for 16 px
    assert conv1(("model", "stem", "imagenet", "--stem")) == (7, 7)
    assert conv1(("model", "stem", "small", "--stem")) == (3, 3)
    with pytest.raises(config.ConfigError, match="must be one of 'auto', 'small', 'imagenet'"):
        conv1(("model", "stem", "big", "--stem"))


def test_flags_are_listed_and_resolved(capsys):
    assert cli.main(["eval", "--model", "byom_factory:build", "--mean", "0.5,1/4",
                     "--std", "0.5", "--stem", "small", "--image-key", "img",
                     "--print-config"]) == 0
    out = capsys.readouterr().out
    assert 'name = "byom_factory:build"' in out and "mean = [0.5, 0.25]" in out
    assert 'stem = "small"' in out and 'image_key = "img"' in out


def test_stem_is_refused_for_a_model_that_builds_its_own(tmp_path, capsys):
    err = _fails(capsys, ["eval", "--model", "byom_factory:build", "--stem", "small",
                          "--dataset", "byom_factory:test_set", "--weights",
                          str(_weights(tmp_path))])
    assert "stem applies to the shipped families" in err
