"""A small model trained on the real 8x8 digits that ship with scikit-learn."""
import pytest
import torch
from torch import nn


def _digits_mlp():
    from robustops.data import load_sklearn_digits

    train = load_sklearn_digits("train", seed=0)
    test = load_sklearn_digits("test", seed=0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = train.tensors
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    xt, yt = test.tensors
    with torch.no_grad():
        acc = (model(xt).argmax(1) == yt).float().mean().item()
    assert acc > 0.9, acc
    return model, xt, yt


@pytest.fixture(scope="session")
def digits_model():
    """(model, x_test (N,1,8,8) in [0,1], y_test) with > 90% clean accuracy."""
    pytest.importorskip("sklearn")
    return _digits_mlp()
