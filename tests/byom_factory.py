"""A user's own model and data, as `robustops eval --model byom_factory:build --dataset
byom_factory:test_set` imports them (tests/test_cli_byom.py, the README's section).

The model expects inputs normalised with MEAN / STD, and the test set's labels are its
own predictions on normalised inputs: evaluated right (with --mean/--std) its clean
accuracy is exactly 1; evaluated on raw pixels it is far lower.
"""
import torch
from torch import nn

MEAN, STD = (0.2, 0.5, 0.8), (0.1, 0.2, 0.3)
NUM_CLASSES = 4
NOT_CALLABLE = 3


class TinyNet(nn.Module):
    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3), nn.Tanh(), nn.Flatten())
        self.head = nn.Linear(6 * 6 * 6, num_classes)
        g = torch.Generator().manual_seed(4)  # deterministic without touching the global RNG
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, x):
        return self.head(self.features(x))


def build(num_classes: int = NUM_CLASSES) -> nn.Module:
    return TinyNet(num_classes)


def build_without_arguments() -> nn.Module:
    return TinyNet()


def not_a_model():
    return "a model"


def needs_width(width):
    return TinyNet()


class DictImages(torch.utils.data.Dataset):
    """Hugging Face-style samples: {"img": (3, 8, 8), "target": int, "id": int}."""

    classes = [f"class {i}" for i in range(NUM_CLASSES)]

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"img": self.x[i], "target": int(self.y[i]), "id": i}


def images(n: int = 48):
    x = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    mean, std = torch.tensor(MEAN)[:, None, None], torch.tensor(STD)[:, None, None]
    with torch.no_grad():
        y = build()((x - mean) / std).argmax(1)
    return x, y


def test_set(split: str = "test"):
    return DictImages(*images())


def test_loader():
    return torch.utils.data.DataLoader(test_set(), batch_size=16)
