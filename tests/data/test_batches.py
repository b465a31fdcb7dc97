"""One adapter for every data form: tensors, Datasets, DataLoaders, tuple or dict samples;
the evaluators give the same numbers for each, and a dict without the key says which
keys it has."""
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from robustops.data.batches import (batch_images_labels, image_and_label, image_label_view,
                                    sample_dataset)
from robustops.eval import accuracy, robust_accuracy, shard_batches
from robustops.eval.dataset_batches import iterate_batches


class Dicts(Dataset):
    def __init__(self, x, y, image_key="image", label_key="label"):
        self.x, self.y, self.ik, self.lk = x, y, image_key, label_key

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {self.ik: self.x[i], self.lk: int(self.y[i]), "path": f"img{i}.png"}


class Stream(IterableDataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __iter__(self):
        for i in range(len(self.x)):
            yield {"pixel_values": self.x[i], "labels": self.y[i]}


def _data(n=10):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 4, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def _forms(x, y):
    return {
        "tensors": ((x, y), {}),
        "tensor_dataset": (TensorDataset(x, y), {}),
        "tuple_loader": (DataLoader(TensorDataset(x, y), batch_size=3), {}),
        "dict_dataset": (Dicts(x, y), {}),
        "dict_loader": (DataLoader(Dicts(x, y), batch_size=4), {}),
        "keyed_dataset": (Dicts(x, y, "im", "cls"), dict(image_key="im", label_key="cls")),
        "keyed_loader": (DataLoader(Dicts(x, y, "im", "cls"), batch_size=4),
                         dict(image_key="im", label_key="cls")),
        "stream": (DataLoader(Stream(x, y), batch_size=5), {}),
        "list_of_dict_batches": ([{"img": x[:6], "target": y[:6]},
                                  {"img": x[6:], "target": y[6:]}], {}),
    }


@pytest.mark.parametrize("form", list(_forms(*_data())))
def test_every_form_gives_the_same_samples(form):
    x, y = _data()
    data, keys = _forms(x, y)[form]
    batches = list(iterate_batches(data, 4, **keys))
    assert torch.equal(torch.cat([b[0] for b in batches]), x)
    assert torch.equal(torch.cat([b[1] for b in batches]), y)
    # A view with the keys bound serves evaluators that take no keys.
    view = image_label_view(data, **keys)
    assert torch.equal(torch.cat([b[1] for b in iterate_batches(view, 4)]), y)
    # max_samples cuts every form at the same sample.
    assert sum(b[0].shape[0] for b in iterate_batches(data, 4, 7, **keys)) == 7


@pytest.mark.parametrize("form", ["tensors", "dict_dataset", "dict_loader", "keyed_loader"])
def test_evaluators_give_the_same_numbers_for_each_form(form):
    from robustops.attacks import FGSM

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    x, y = _data(12)
    data, keys = _forms(x, y)[form]
    ref_acc = float((model(x).argmax(1) == y).float().mean())
    assert accuracy(model, data, batch_size=5, **keys) == pytest.approx(ref_acc)
    ref = robust_accuracy(model, (x, y), [FGSM(model, eps=0.05)], batch_size=4, progress=False)
    res = robust_accuracy(model, image_label_view(data, **keys), [FGSM(model, eps=0.05)],
                          batch_size=4, progress=False)
    assert (res.n, res.clean, res.worst_case) == (ref.n, ref.clean, ref.worst_case)


def test_sharded_batches_of_dict_datasets_match_tensors():
    x, y = _data()
    for rank in range(2):
        a = list(shard_batches((x, y), 3, rank=rank, world=2))
        b = list(shard_batches(Dicts(x, y, "im", "cls"), 3, rank=rank, world=2,
                               image_key="im", label_key="cls"))
        assert [o for o, _, _ in a] == [o for o, _, _ in b]
        assert all(torch.equal(p[1], q[1]) and torch.equal(p[2], q[2]) for p, q in zip(a, b))


def test_a_dict_without_the_key_lists_its_keys():
    x, y = _data()
    with pytest.raises(ValueError, match=r"sample 0 is a dict without image_key 'pixels'; its "
                                         r"keys are 'image', 'label', 'path': pass image_key="):
        list(iterate_batches(Dicts(x, y), 4, image_key="pixels"))
    with pytest.raises(ValueError, match=r"batch 0 is a dict with none of the usual label keys "
                                         r"\(label, labels, target, targets, y\); its keys are "
                                         r"'image', 'cls'"):
        list(iterate_batches([{"image": x, "cls": y}], 4))
    with pytest.raises(TypeError, match="image_key must be a str or None"):
        image_and_label({"image": 1, "label": 2}, image_key=3)


def test_bad_data_and_batches_are_explained():
    x, y = _data()
    with pytest.raises(TypeError, match=r"got Tensor \(pass \(x, y\), a pair of tensors\)"):
        list(iterate_batches(x, 4))
    with pytest.raises(TypeError, match="a dict is one batch"):
        accuracy(nn.Flatten(), {"image": x, "label": y})
    with pytest.raises(TypeError, match="images of batch 0 are a list, not a tensor"):
        list(iterate_batches([{"image": [[0.0]], "label": [1]}], 4))
    with pytest.raises(ValueError, match=r"labels must be \(B,\) class indices"):
        batch_images_labels((x, y[:3]), what="batch 2")
    with pytest.raises(ValueError, match="x has 10 samples but y has 3"):
        list(iterate_batches((x, y[:3]), 4))


def test_sample_dataset_for_training():
    x, y = _data()
    loader = DataLoader(Dicts(x, y), batch_size=128)  # the trainer batches it itself
    ds = sample_dataset(loader)
    assert len(ds) == 10  # samples, not the loader's 1 batch
    xi, yi = ds[3]
    assert torch.equal(xi, x[3]) and yi == int(y[3])
    assert isinstance(sample_dataset((x, y)), TensorDataset)
    with_masks = TensorDataset(x, y, torch.zeros(10, 4, 4))  # extra fields are kept
    assert sample_dataset(DataLoader(with_masks, batch_size=4)) is with_masks
    assert len(sample_dataset(Dicts(x, y, "im", "cls"), image_key="im", label_key="cls")) == 10
    with pytest.raises(TypeError, match="training needs a map-style dataset"):
        sample_dataset(Stream(x, y))
