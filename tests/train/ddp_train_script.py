"""Run by test_trainer.py under torchrun (2 processes, gloo): train, then dump each rank's weights."""
import sys

import torch
from torch import nn

from robustops.data import load_sklearn_digits
from robustops.train import PGDAT, Trainer

out = sys.argv[1]
train = load_sklearn_digits("train", seed=0)
torch.manual_seed(0)
model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
trainer = Trainer(model, PGDAT(eps=0.05, steps=2), train, batch_size=32, epochs=1, lr=0.05,
                  out_dir=out, checkpoint_every=10, progress=False)
metrics = trainer.fit()
torch.save({k: v.clone() for k, v in model.state_dict().items()}, f"{out}/rank{trainer.rank}.pt")
print(f"rank {trainer.rank}/{trainer.world} loss {metrics['loss']:.4f}")
