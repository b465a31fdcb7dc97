"""Sharded evaluation: each rank attacks its batches, the totals equal one process's, exactly."""
import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from robustops import cli
from robustops.attacks import PGD
from robustops.eval import robust_accuracy, shard_batches

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _samples(n=23):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 4, 4, generator=g), torch.arange(n) % 3


@pytest.mark.parametrize("kind", ["tensors", "dataset", "loader"])
def test_shards_partition_the_single_process_batches(kind):
    x, y = _samples()
    data = {"tensors": (x, y), "dataset": TensorDataset(x, y),
            "loader": DataLoader(TensorDataset(x, y), batch_size=5)}[kind]
    single = [(o, xb.clone()) for o, xb, _ in shard_batches(data, 5, max_samples=21)]
    assert [o for o, _ in single] == [0, 5, 10, 15, 20] and single[-1][1].shape[0] == 1
    for world in (2, 3, 7):
        shards = [(o, xb) for r in range(world)
                  for o, xb, _ in shard_batches(data, 5, max_samples=21, rank=r, world=world)]
        assert sorted(o for o, _ in shards) == [o for o, _ in single]
        for o, xb in shards:
            assert torch.equal(xb, x[o:o + xb.shape[0]])


def test_distributed_flag_without_a_process_group_is_a_plain_evaluation():
    x, y = _samples()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    attack = PGD(model, eps=0.3, steps=2, seed=1)
    a = robust_accuracy(model, (x, y), [attack], batch_size=4, progress=False)
    b = robust_accuracy(model, TensorDataset(x, y), [attack], batch_size=4, progress=False,
                        distributed=True)
    assert (a.n, a.clean, a.per_attack, a.worst_case) == (b.n, b.clean, b.per_attack, b.worst_case)


CONFIG = """
[data]
dataset = "digits"
[objective]
name = "ce"
[optim]
epochs = 2
batch_size = 32
lr = 0.01
[run]
out = "{out}"
eval_every = 1
progress = false
[eval]
eps = 0.15
steps = 3
restarts = 2        # random starts keyed by global sample index (and restart)
samples = 100
batch_size = 16     # 7 batches: rank 0 gets 4, rank 1 gets 3 (the last one partial)
"""


def _torchrun(*args):
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])  # installed or not
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", "-m", "robustops", *args],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def test_torchrun_train_and_eval_match_one_process(tmp_path, capsys):
    pytest.importorskip("sklearn")
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    out = tmp_path / "run"
    cfg = tmp_path / "ddp.toml"
    cfg.write_text(CONFIG.format(out=out))
    stdout = _torchrun("train", "--config", str(cfg))
    assert "DDP: 2 processes" in stdout
    # The Trainer's evaluations ran sharded over both ranks; the last one saw the final weights.
    in_training = [r["eval"] for r in map(json.loads, (out / "metrics.jsonl").read_text()
                                          .splitlines()) if "eval" in r][-1]
    stdout = _torchrun("eval", "--config", str(cfg), "--json", str(tmp_path / "ddp.json"))
    assert "sharded over 2 processes" in stdout
    ddp = json.loads((tmp_path / "ddp.json").read_text())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the torchrun workers (OMP_NUM_THREADS=1)
    try:
        assert cli.main(["eval", "--config", str(cfg), "--json", str(tmp_path / "one.json")]) == 0
    finally:
        torch.set_num_threads(threads)
    one = json.loads((tmp_path / "one.json").read_text())
    assert one["processes"] == 1 and ddp["processes"] == 2 and one["n"] == ddp["n"] == 100
    counts = {k: (one[k], ddp[k]) for k in ("clean", "worst_case", "per_attack")}
    assert all(a == b for a, b in counts.values()), counts
    assert 0 < one["worst_case"] < one["clean"]  # the attack breaks some images, not all
    assert in_training == {"clean": one["clean"], "pgd3": one["worst_case"], "n": 100}
