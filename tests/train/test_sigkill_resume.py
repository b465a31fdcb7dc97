"""A training run killed with SIGKILL mid-epoch and rerun ends exactly where an uninterrupted run does."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from robustops import cli
from robustops.train import load_weights

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CONFIG = """
[data]
dataset = "digits"
[objective]
name = "pgd_at"     # random starts: the objective's RNG state must survive the kill too
eps = 0.1
steps = 2
[optim]
epochs = 2
batch_size = 32     # 44 steps per epoch
[run]
out = "{out}"
checkpoint_every = 5
eval_every = 1
progress = false
[eval]
samples = 64
steps = 2
"""
STEPS_PER_EPOCH = 1437 // 32
# One thread, as in the uninterrupted run below: the same arithmetic, bit for bit.
CHILD = ("import sys, torch; torch.set_num_threads(1); from robustops.cli import main; "
         "sys.exit(main(sys.argv[1:]))")


def _checkpoint_steps(out):
    root = out / "checkpoints"
    return [int(p.name[5:]) for p in root.glob("step-*")] if root.is_dir() else []


def _metrics(out):
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for r in records:
        r.pop("seconds", None)  # wall time differs, nothing else may
    return records


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    pytest.importorskip("sklearn")
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    for out in (ref, killed):
        (tmp_path / f"{out.name}.toml").write_text(CONFIG.format(out=out))
    env = dict(os.environ, OMP_NUM_THREADS="1",  # robustops importable, installed or not
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    args = [sys.executable, "-c", CHILD, "train", "--config", str(tmp_path / "killed.toml")]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # Kill as soon as a checkpoint inside the second epoch exists: mid-epoch, with
        # steps (and metric lines) after that checkpoint already taken.
        deadline = time.monotonic() + 240
        while not any(STEPS_PER_EPOCH < s < 2 * STEPS_PER_EPOCH for s in _checkpoint_steps(killed)):
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "no mid-epoch checkpoint appeared"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    assert not (killed / "model.safetensors").exists()
    last = max(_checkpoint_steps(killed))
    assert STEPS_PER_EPOCH < last < 2 * STEPS_PER_EPOCH

    res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "resuming" in res.stdout and "at epoch 2, step" in res.stdout

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the uninterrupted run, in this process, as the child runs
    try:
        assert cli.main(["train", "--config", str(tmp_path / "ref.toml")]) == 0
    finally:
        torch.set_num_threads(threads)

    a, b = load_weights(ref / "model.safetensors"), load_weights(killed / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert _metrics(ref) == _metrics(killed)
    assert sum("eval" in r for r in _metrics(killed)) == 2
