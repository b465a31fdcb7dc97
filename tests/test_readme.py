"""The README's two set-up commands exist, and .ci/run runs the test one verbatim."""
import math
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text)


def test_readme_starts_with_two_setup_commands():
    cmds = _readme_commands()
    assert len(cmds) >= 2
    main, tests = cmds[0], cmds[1]
    assert "pip install" in main and main.rstrip().endswith("robustops quickstart")
    assert "pip install" in tests and "pytest" in tests


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in ci
    assert any("ROBUSTOPS_CUDA=1" in line for line in ci)


def _python_blocks_after(heading):
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading):]
    section = section[:section.index("\n### ", 1)]
    return re.findall(r"```python\n(.+?)\n```", section, re.S)


def test_readme_eval_suite_snippets_run():
    import torch

    from robustops.models import SmallCNN

    blocks = _python_blocks_after("### Evaluation suite")
    assert len(blocks) == 2
    torch.manual_seed(0)
    ns = {"model": SmallCNN(3, 8, 32).eval(), "baseline": SmallCNN(3, 8, 32).eval(),
          "x": torch.rand(4, 3, 32, 32), "y": torch.randint(0, 8, (4,))}
    # Two corruptions instead of 19 keep the test short; the call is the README's.
    code = blocks[0].replace("make_shapes(1000,", "make_shapes(16,")
    code = code.replace(", (x, y))", ", (x, y), corruptions=('fog', 'contrast'))")
    assert code.count("corruptions=('fog'") == 2
    exec(code, ns)
    sb = ns["sb"].shape_bias
    assert ns["xc"].shape == ns["x"].shape and (math.isnan(sb) or 0 <= sb <= 1)
    # The neuron block on parts images (64 px): a parts-sized SmallCNN.
    ns["model"] = SmallCNN(3, 5, 64).eval()
    exec(blocks[1].replace("make_parts(500,", "make_parts(20,"), ns)
    assert sum(ns["d"].counts().values()) <= ns["d"].iou.shape[0]
    assert set(ns["d"].concepts) == {n for n in ns["parts"].part_names[1:]}


def test_readme_v1_snippet_runs(tmp_path, monkeypatch):
    import torch

    (block,) = _python_blocks_after("### V1 front-ends")
    monkeypatch.chdir(tmp_path)  # the Trainer writes its run folder here
    data = torch.utils.data.TensorDataset(torch.rand(128, 3, 32, 32), torch.randint(0, 8, (128,)))
    ns = {"torch": torch, "train_set": data}
    exec(block.replace("epochs=8)", "epochs=1, progress=False)"), ns)
    assert ns["v1"].shape == (4, 512, 56, 56)
    assert ns["teacher"].front is not None and ns["teacher"].stochastic


def test_readme_tenet_and_attribution_snippet_runs():
    import torch

    blocks = _python_blocks_after("### Group inhibition (TENET)")
    assert len(blocks) == 1
    torch.manual_seed(0)
    ns = {"x": torch.rand(2, 3, 32, 32), "y": torch.tensor([1, 3])}
    exec(blocks[0].replace("steps=50", "steps=4"), ns)
    step = ns["step"]
    assert step.mask.shape == step.features.shape and step.mask.shape[1] == 128  # layer2
    assert bool(((step.mask > 0) & (step.mask <= 1)).all())
    assert ns["loss"].requires_grad and torch.isfinite(ns["loss"])
    assert not ns["net"].layer2._forward_hooks  # the with block removed the hook
    assert ns["maps"].requires_grad and ns["maps"].shape == ns["x"].shape
    assert set(ns["m"]) == {"topk", "kendall", "spearman"} and ns["m"]["topk"].shape == (2,)


def test_readme_bring_your_own_model_snippets_run(tmp_path, monkeypatch, capsys):
    import shlex

    import torch

    monkeypatch.syspath_prepend(str(ROOT / "tests"))
    import byom_factory
    from robustops import cli

    heading = "### Bring your own model"
    (block,) = _python_blocks_after(heading)
    section = (ROOT / "README.md").read_text().split(heading, 1)[1].split("\n### ", 1)[0]
    (command,) = re.findall(r"```bash\n(.+?)\n```", section)
    monkeypatch.chdir(tmp_path)
    model = byom_factory.build()
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}},
               "weights.pt")
    x, y = byom_factory.images(4)
    ns = {"build": byom_factory.build, "MEAN": byom_factory.MEAN, "STD": byom_factory.STD,
          "test_set": byom_factory.test_set(), "x": x, "y": y}
    exec(block, ns)
    assert ns["res"].clean == 1.0  # the test set's labels are the normalised model's choices
    assert ns["maps"].shape == x.shape
    # The shell line, run as written (the package the README names, here a thin alias),
    # with a small evaluation appended.
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "models.py").write_text("from byom_factory import build\n")
    (tmp_path / "mypkg" / "data.py").write_text("from byom_factory import test_set\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = shlex.split(command)
    assert argv[0] == "robustops"
    assert cli.main(argv[1:] + ["--samples", "8", "--steps", "1"]) == 0
    assert "8 images" in capsys.readouterr().out
