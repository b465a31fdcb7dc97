"""robustops.progress: a tqdm bar on a terminal, periodic plain lines in logs."""
import io

import pytest
import torch
from torch import nn

from robustops import progress as progress_module
from robustops.progress import LineProgress, progress


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def clock(monkeypatch):
    """A fake clock, and a log that has been quiet since it started (no earlier report)."""
    monkeypatch.setattr(progress_module, "_quiet_since", None)
    return FakeClock()


def run_loop(clock, out, total, seconds_per_step, interval=10.0, desc="train epoch 2/5"):
    bar = LineProgress(total=total, desc=desc, unit="step", file=out, interval=interval,
                       clock=clock)
    for i in range(total):
        clock.now += seconds_per_step
        bar.update(1)
        bar.set_postfix({"loss": f"{1 / (i + 1):.3f}"})
    bar.close()


def test_lines_come_once_per_interval_with_counts_rate_and_eta(clock):
    out = io.StringIO()
    run_loop(clock, out, total=1280, seconds_per_step=1 / 16)  # 80 s (exact in binary)
    lines = out.getvalue().splitlines()
    # 80 s at one line per 10 s: 8 periodic lines (the 8th at the last step) and the
    # closing one.
    assert len(lines) == 8 + 1, lines
    first = lines[0]
    assert first.startswith("train epoch 2/5: 160/1280 steps, 16 step/s, eta ")
    assert "(loss " in first
    eta = first.split("eta ")[1].split(" (")[0]
    assert eta == "1 min 10 s"  # 1120 steps left at 16 step/s
    assert lines[-1].startswith("train epoch 2/5: 1280/1280 steps in 1 min 20 s, 16 step/s")


def test_the_interval_is_shared_so_short_loops_are_not_silent_nor_each_printed(clock):
    out = io.StringIO()
    for epoch in range(6):  # six 4-second epochs: 24 s in all
        run_loop(clock, out, total=32, seconds_per_step=1 / 8, desc=f"epoch {epoch + 1}/6")
    lines = out.getvalue().splitlines()
    periodic = [x for x in lines if " in " not in x]
    assert len(periodic) == 2, lines  # at 10 s and 20 s, in epochs 3 and 5
    assert periodic[0].startswith("epoch 3/6: ") and periodic[1].startswith("epoch 5/6: ")
    # Each report that printed closes with a line; the silent ones print nothing.
    assert [x.split(":")[0] for x in lines if " in " in x] == ["epoch 3/6", "epoch 5/6"]


def test_a_short_report_prints_nothing(clock):
    out = io.StringIO()
    run_loop(clock, out, total=16, seconds_per_step=1 / 8)
    assert out.getvalue() == ""


def test_without_a_total_and_with_an_initial_count(clock):
    out = io.StringIO()
    bar = LineProgress(desc="robust accuracy", unit="img", initial=100, file=out, interval=1,
                       clock=clock)
    clock.now = 2.0
    bar.update(50)
    assert out.getvalue().splitlines() == ["robust accuracy: 150 imgs, 25 img/s"]


def test_iterating_yields_every_item_and_closes(clock):
    out = io.StringIO()
    items = list(range(7))
    bar = LineProgress(items, desc="cases", unit="case", file=out, interval=0.0, clock=clock)
    seen = []
    for item in bar:
        clock.now += 1
        seen.append(item)
    assert seen == items and bar.total == 7 and bar.n == 7 and bar.closed
    assert out.getvalue().splitlines()[-1].startswith("cases: 7/7 cases in 7 s, 1 case/s")


def test_progress_picks_tqdm_on_a_terminal_lines_elsewhere_and_nothing_when_off(monkeypatch):
    from tqdm import tqdm

    monkeypatch.delenv("ROBUSTOPS_PROGRESS", raising=False)
    bar = progress(total=3, desc="x", file=Terminal())
    assert isinstance(bar, tqdm)
    bar.close()
    assert type(progress(total=3, desc="x", file=io.StringIO())) is LineProgress
    off = progress(range(3), desc="x", file=io.StringIO(), enabled=False)
    assert not isinstance(off, tqdm) and list(off) == [0, 1, 2]
    monkeypatch.setenv("ROBUSTOPS_PROGRESS", "0")
    off = progress(total=3, desc="x", file=Terminal())
    off.update(3)
    off.close()
    assert not isinstance(off, tqdm) and off.file.getvalue() == ""


@pytest.mark.parametrize("value", ["-1", "soon", "nan"])
def test_a_bad_interval_is_refused_by_name(monkeypatch, value):
    monkeypatch.setenv("ROBUSTOPS_PROGRESS_SECONDS", value)
    with pytest.raises(ValueError, match="ROBUSTOPS_PROGRESS_SECONDS"):
        progress(total=3, file=io.StringIO())


def test_corruption_accuracy_reports_progress_in_a_log(monkeypatch, capsys):
    """A library loop reports through progress(): lines on stderr when it is not a terminal."""
    from robustops.eval.corruption_benchmark import corruption_accuracy

    monkeypatch.setenv("ROBUSTOPS_PROGRESS_SECONDS", "0")
    monkeypatch.setattr(progress_module, "_quiet_since", None)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    x, y = torch.rand(6, 3, 8, 8), torch.randint(0, 4, (6,))
    corruption_accuracy(model, (x, y), corruptions=("gaussian_noise",), severities=(1,),
                        batch_size=2, progress=True)
    err = capsys.readouterr().err.splitlines()
    assert "corruptions: 2 imgs" in err[0] and err[-1].startswith("corruptions: 6 imgs in ")
