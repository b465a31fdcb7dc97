"""The `robustops train` and `robustops eval` commands end to end on the sklearn digits."""
import json
import subprocess
import sys

import pytest


def _run(*args, timeout=600):
    res = subprocess.run([sys.executable, "-m", "robustops", *args], capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def test_train_resume_and_eval(tmp_path):
    pytest.importorskip("sklearn")
    out = tmp_path / "run"
    common = ["--dataset", "digits", "--objective", "pgd_at", "--steps", "2", "--eps", "0.1",
              "--batch-size", "64", "--eval-every", "1", "--eval-samples", "64", "--eval-steps", "3",
              "--out", str(out)]
    _run("train", "--epochs", "1", *common)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("eval" in r for r in lines)
    stdout = _run("train", "--epochs", "2", *common)  # a longer run resumes the shorter one
    assert "resuming" in stdout and "epoch 2" in stdout
    stdout = _run("eval", "--dataset", "digits", "--weights", str(out / "model.safetensors"), "--eps", "0.1",
                  "--attack", "pgd+apgd", "--steps", "5", "--samples", "100",
                  "--json", str(tmp_path / "eval.json"))
    assert "worst case" in stdout
    res = json.loads((tmp_path / "eval.json").read_text())
    assert res["n"] == 100 and 0 <= res["worst_case"] <= res["clean"] <= 1


def test_eval_rejects_corrupt_weights(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"garbage")
    res = subprocess.run([sys.executable, "-m", "robustops", "eval", "--dataset", "digits",
                          "--weights", str(bad)], capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "corrupt" in res.stderr


def test_quickstart_rejects_unknown_family(tmp_path):
    res = subprocess.run([sys.executable, "-m", "robustops", "quickstart", "--family", "partz",
                          "--out", str(tmp_path / "qs")], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2 and "unknown family partz" in res.stderr and "parts" in res.stderr


@pytest.mark.parametrize("command", ["shape-study", "v1-study", "tenet-study", "part-study",
                                     "attribution-study"])
def test_study_commands_pass_their_options_and_print_the_summary(command, monkeypatch, capsys):
    import importlib

    from robustops import cli, quickstart

    family = cli.STUDIES[command][0]
    fam = quickstart.FAMILIES[family]
    study = importlib.import_module(f"robustops.studies.{fam.module}")
    seen = {}

    def fake_run(out, **kw):
        seen.update(kw, out=out)
        row = {}
        for _, key in fam.columns:  # a result with every summary key, nested ones too
            d = row
            parts = key.split(".")
            for p in parts[:-1]:
                d = d.setdefault(p, {})
            d[parts[-1]] = 0.5
        return {"model_a": row}

    monkeypatch.setattr(study, "run", fake_run)
    assert cli.main([command, "--out", "somewhere", "--seed", "3", "--epochs", "7"]) == 0
    assert seen["out"] == "somewhere" and seen["seed"] == 3 and seen["epochs"] == 7
    assert seen["device"] is None
    printed = capsys.readouterr().out
    assert "model_a" in printed and "somewhere/report.md" in printed
    for label, _ in fam.columns:
        assert label in printed


# ----------------------------------------------------------------------------- user errors


def _fails(capsys, argv, code=2):
    """cli.main(argv) ends with `code` and ONE line on stderr (no traceback); that line."""
    from robustops import cli

    assert cli.main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def _refused_by_argparse(capsys, argv):
    from robustops import cli

    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_eval_refuses_missing_corrupt_and_foreign_weights_in_one_line(tmp_path, capsys):
    pytest.importorskip("sklearn")
    from torch import nn

    from robustops.train import save_weights

    base = ["eval", "--dataset", "digits", "--samples", "8", "--steps", "1"]
    err = _fails(capsys, base + ["--weights", str(tmp_path / "nope.safetensors")])
    assert "nope.safetensors does not exist" in err
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    assert "corrupt" in _fails(capsys, base + ["--weights", str(bad)])
    foreign = tmp_path / "foreign.safetensors"
    save_weights(nn.Linear(3, 2).state_dict(), foreign)
    err = _fails(capsys, base + ["--weights", str(foreign)])
    assert "do not fit model 'small_cnn'" in err and "missing" in err and "unexpected" in err


def test_eval_json_into_a_missing_folder_fails_before_evaluating(tmp_path, capsys, monkeypatch):
    pytest.importorskip("sklearn")
    import robustops.eval

    from robustops.models import SmallCNN
    from robustops.train import save_weights

    weights = tmp_path / "w.safetensors"
    save_weights(SmallCNN(1, 10, image_size=16, width=16, hidden=64).state_dict(), weights)
    monkeypatch.setattr(robustops.eval, "robust_accuracy", None)  # must not be reached
    err = _fails(capsys, ["eval", "--dataset", "digits", "--weights", str(weights),
                          "--json", str(tmp_path / "missing" / "eval.json")])
    assert "[eval] json" in err and "does not exist" in err


def test_bad_backend_environment_variable_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.setenv("ROBUSTOPS_BACKEND", "bogus")
    err = _fails(capsys, ["train", "--dataset", "digits", "--epochs", "1"])
    assert "ROBUSTOPS_BACKEND" in err and "bogus" in err
    from robustops import cli

    assert cli.main(["info"]) == 0  # info reports it instead
    assert "requested backend: INVALID" in capsys.readouterr().out


def test_train_refuses_missing_data_root_non_utf8_config_and_a_file_as_out(tmp_path, capsys):
    err = _fails(capsys, ["train", "--dataset", "cifar", "--data-root", str(tmp_path / "nope")])
    assert "[data] root" in err and "does not exist" in err
    config = tmp_path / "latin1.toml"
    config.write_bytes("# r\xe9sum\xe9\n[optim]\nlr = 0.1\n".encode("latin-1"))
    assert "not UTF-8" in _fails(capsys, ["train", "--config", str(config)])
    out = tmp_path / "taken"
    out.write_text("not a folder")
    err = _fails(capsys, ["train", "--dataset", "digits", "--out", str(out)])
    assert "[run] out" in err and "is a file" in err
    assert out.read_text() == "not a folder"


@pytest.mark.parametrize("errno_name", ["ENOSPC", "EROFS"])
def test_full_or_read_only_disk_ends_in_one_line_with_exit_1(tmp_path, capsys, monkeypatch,
                                                             errno_name):
    pytest.importorskip("sklearn")
    import errno
    import os

    from robustops.train import Trainer

    code = getattr(errno, errno_name)

    def fit(self):
        raise OSError(code, os.strerror(code), str(tmp_path / "run" / "metrics.jsonl"))

    monkeypatch.setattr(Trainer, "fit", fit)
    err = _fails(capsys, ["train", "--dataset", "digits", "--epochs", "1", "--out",
                          str(tmp_path / "run")], code=1)
    assert os.strerror(code) in err and "metrics.jsonl" in err


def test_a_real_write_failure_during_a_checkpoint_save_ends_in_one_line(tmp_path, capsys,
                                                                        monkeypatch):
    """A real failed write, not a mocked one: under a file-size limit the checkpoint's tensors
    file fails to write as on a full disk (EFBIG for ENOSPC). safetensors raises its own
    SafetensorError for it, which once ended in a traceback; now one line, exit 1, and no
    partial checkpoint left behind."""
    pytest.importorskip("sklearn")
    resource = pytest.importorskip("resource")
    import signal

    if signal.getsignal(signal.SIGXFSZ) != signal.SIG_IGN:  # Python ignores it by default
        pytest.skip("SIGXFSZ is not ignored: a write over the limit would kill the process")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    limit = 32 * 1024  # config.toml and metrics.jsonl fit; the checkpoint's tensors do not
    if hard != resource.RLIM_INFINITY and hard < limit:
        pytest.skip("the file-size hard limit is below the test's")
    out = tmp_path / "run"
    # No progress lines: a slow first step prints one beside the error (seen in CI).
    monkeypatch.setenv("ROBUSTOPS_PROGRESS", "0")
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        err = _fails(capsys, ["train", "--dataset", "digits", "--objective", "ce", "--epochs", "1",
                              "--checkpoint-every", "2", "--out", str(out)], code=1)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert "cannot write" in err and "tensors.safetensors" in err and "File too large" in err
    assert not list((out / "checkpoints").iterdir())


def test_seed_beyond_64_bits_is_refused_naming_seed(capsys):
    err = _fails(capsys, ["train", "--seed", str(2 ** 64), "--print-config"])
    assert "--seed ([run] seed) must be an integer >= 0 and <= 9223372036854775807" in err
    from robustops import cli

    assert cli.main(["train", "--seed", str(2 ** 63 - 1), "--print-config"]) == 0
    capsys.readouterr()
    line = _refused_by_argparse(capsys, ["shape-study", "--seed", str(2 ** 64)])
    assert "--seed" in line and "seed must be in [0, 2**63 - 1]" in line


@pytest.mark.parametrize("argv, flag", [
    (["shape-study", "--n-train", "0"], "--n-train"),
    (["tenet-study", "--epochs", "0"], "--epochs"),
    (["attribution-study", "--eps", "-1"], "--eps"),
    (["bench", "--repeats", "0"], "--repeats"),
    (["bench", "--threads", "0"], "--threads"),
])
def test_non_positive_counts_are_refused(capsys, argv, flag):
    line = _refused_by_argparse(capsys, argv)
    assert f"argument {flag}" in line and ("must be an integer >= 1" in line
                                           or "must be a finite number >= 0" in line)


def test_bench_json_into_a_missing_folder_fails_before_timing(tmp_path, capsys):
    err = _fails(capsys, ["bench", "--quick", "--only", "pgd_step", "--json",
                          str(tmp_path / "missing" / "bench.json")])
    assert "--json" in err and "does not exist" in err


def test_train_never_follows_a_planted_temporary_file(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    from robustops import cli
    from robustops.train import Trainer

    out, target = tmp_path / "run", tmp_path / "victim.txt"
    out.mkdir()
    target.write_text("keep me")
    (out / "config.toml.tmp").symlink_to(target)
    monkeypatch.setattr(Trainer, "fit", lambda self: {})
    assert cli.main(["train", "--dataset", "digits", "--epochs", "1", "--out", str(out)]) == 0
    assert target.read_text() == "keep me"
    assert "[optim]" in (out / "config.toml").read_text()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".config.toml.")]
