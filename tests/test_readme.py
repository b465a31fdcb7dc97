"""The README's two set-up commands exist, and .ci/run runs the test one verbatim."""
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
