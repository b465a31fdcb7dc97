"""Move an in-memory dataset's tensors to a device once (embedded data fits on any GPU)."""
from __future__ import annotations

from typing import TypeVar, Union

import torch
from torch.utils.data import Dataset, TensorDataset

D = TypeVar("D", bound=Dataset)


def to_device(dataset: D, device: Union[None, str, torch.device]) -> D:
    """Move every tensor attribute of `dataset` (and TensorDataset.tensors) to `device`, in place.

    Returns the dataset, so studies can write `test = to_device(make_shapes(...), device)`;
    None or a CPU device leaves CPU data untouched. Batches indexed from it are then already
    on the model's device (use num_workers=0 with CUDA-held data).
    """
    if device is None:
        return dataset
    device = torch.device(device)
    if isinstance(dataset, TensorDataset):
        dataset.tensors = tuple(t.to(device) for t in dataset.tensors)
        return dataset
    for name, value in vars(dataset).items():
        if isinstance(value, torch.Tensor):
            setattr(dataset, name, value.to(device))
        elif isinstance(value, Dataset):
            to_device(value, device)
    return dataset
