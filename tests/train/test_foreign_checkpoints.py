"""Foreign checkpoints: every form torch.save files come in loads through load_weights, and
what cannot load (a full model, a pickle that would run code, an optimizer alone) is a
CheckpointError that says what the file holds."""
import os
import pickle

import pytest
import torch
from torch import nn

from robustops.train import load_weights, save_weights
from robustops.train.checkpoint import CheckpointError
from robustops.train.foreign_checkpoints import (find_state_dict, fit_state_dict,
                                                 is_torch_file, load_torch_weights,
                                                 strip_wrapper_prefixes)


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 3))


def _equal(a, b):
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _prefixed(sd, prefix):
    return {prefix + k: v for k, v in sd.items()}


def _forms(sd, model):
    """What training scripts save, by name."""
    return {
        "bare": sd,
        "state_dict": {"state_dict": sd, "epoch": 7},
        "model_state_dict": {"model_state_dict": sd, "optimizer_state_dict": torch.optim.SGD(
            model.parameters(), lr=0.1).state_dict(), "epoch": 3},
        "model": {"model": sd, "best_acc": 0.5},
        "net": {"net": sd, "acc": torch.tensor(0.9)},
        "ddp": _prefixed(sd, "module."),
        "compile": _prefixed(sd, "_orig_mod."),
        "ddp+compile": {"state_dict": _prefixed(sd, "module._orig_mod.")},
        "nested": {"checkpoint": None, "model": {"state_dict": _prefixed(sd, "module.")}},
    }


@pytest.mark.parametrize("form", list(_forms({}, nn.Linear(1, 1))))
@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_each_form_loads_through_load_weights(tmp_path, form, suffix):
    model = _net()
    sd = model.state_dict()
    path = tmp_path / f"w{suffix}"
    torch.save(_forms(sd, model)[form], path)
    state = load_weights(path)
    _equal(state, sd)
    other = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 3))
    other.load_state_dict(state)  # strict: every name fits


def test_legacy_format_and_numpy_extras_load(tmp_path):
    np = pytest.importorskip("numpy")
    sd = _net().state_dict()
    torch.save(sd, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    _equal(load_weights(tmp_path / "old.pth"), sd)
    # numpy scalars saved beside the weights are plain data: allowed.
    torch.save({"state_dict": sd, "best_acc": np.float64(0.93)}, tmp_path / "np.pt")
    _equal(load_weights(tmp_path / "np.pt"), sd)


def test_safetensors_still_load_and_are_told_apart(tmp_path):
    sd = _net().state_dict()
    save_weights(sd, tmp_path / "w.safetensors")
    assert not is_torch_file(tmp_path / "w.safetensors")
    _equal(load_weights(tmp_path / "w.safetensors"), sd)
    torch.save(sd, tmp_path / "w.pt")
    assert is_torch_file(tmp_path / "w.pt")


class _Evil:
    """Unpickling this runs code: it would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _Evil(marker)}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match=r"would run code when loaded \(it calls "
                                              r"(posix|nt)\.system\).*do not use this file"):
        load_weights(path)
    assert not marker.exists()
    # The same with a raw pickle (no torch.save zip around it): refused, nothing runs.
    raw = tmp_path / "evil_raw.pth"
    with open(raw, "wb") as f:
        pickle.dump({"model": _Evil(marker)}, f, protocol=2)
    with pytest.raises(CheckpointError, match="weights_only cannot read"):
        load_weights(raw)
    assert not marker.exists()
    # The test's own evil object does run code when unpickled unsafely (it can fail).
    pickle.loads(pickle.dumps(_Evil(marker)))
    assert marker.exists()


def test_a_full_pickled_model_is_named(tmp_path):
    path = tmp_path / "full.pt"
    torch.save(_net(), path)
    with pytest.raises(CheckpointError, match=r"a full pickled model object \(torch\.nn\.modules"
                                              r".*save `model\.state_dict\(\)` instead"):
        load_weights(path)


def test_an_optimizer_checkpoint_without_weights_is_named(tmp_path):
    model = _net()
    path = tmp_path / "opt.pt"
    torch.save({"optimizer": torch.optim.SGD(model.parameters(), lr=0.1).state_dict(),
                "epoch": 3}, path)
    with pytest.raises(CheckpointError, match=r"an optimizer checkpoint without model weights "
                                              r"\(keys 'optimizer', 'epoch'\)"):
        load_weights(path)
    torch.save(torch.optim.SGD(model.parameters(), lr=0.1).state_dict(), path)
    with pytest.raises(CheckpointError, match="an optimizer checkpoint"):
        load_weights(path)


@pytest.mark.parametrize("obj, match", [
    (torch.zeros(3), r"a single tensor of shape \(3,\)"),
    ([torch.zeros(1)], "a list, not a dict of named tensors"),
    ({}, "an empty dict"),
    ({"epoch": 3, "lr": 0.1}, r"a dict with keys 'epoch', 'lr' and no tensors"),
    ({"w": torch.zeros(1), "epoch": 3}, r"mixing tensors \('w'\) with other values \('epoch'\)"),
])
def test_files_without_a_state_dict_say_what_they_hold(tmp_path, obj, match):
    torch.save(obj, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match=match):
        load_torch_weights(tmp_path / "x.pt")


def test_damaged_files(tmp_path):
    torch.save(_net().state_dict(), tmp_path / "w.pt")
    data = (tmp_path / "w.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged or truncated torch.save file"):
        load_weights(tmp_path / "cut.pt")
    with pytest.raises(FileNotFoundError):
        load_torch_weights(tmp_path / "none.pt")


def test_fit_state_dict_strips_one_shared_prefix_and_lists_misfits():
    model = _net()
    sd = model.state_dict()
    _equal(fit_state_dict(model, _prefixed(sd, "model.")), sd)  # Lightning's `model.`
    _equal(fit_state_dict(model, _prefixed(sd, "module.")), sd)
    wrong = dict(sd)
    del wrong["0.weight"]
    wrong["head.weight"] = torch.zeros(1)
    wrong["3.bias"] = torch.zeros(5)
    with pytest.raises(CheckpointError, match=r"1 missing \('0.weight'\); 1 unexpected "
                                              r"\('head.weight'\); 1 of another shape "
                                              r"\(3.bias \(5,\) vs \(3,\)\)"):
        fit_state_dict(model, wrong)


def test_find_and_strip_are_exact():
    sd = {"module.a": torch.zeros(1), "b": torch.ones(1)}
    assert strip_wrapper_prefixes(sd) == sd  # not every name carries it: left alone
    assert list(find_state_dict({"net": {"x": torch.zeros(1)}})) == ["x"]
