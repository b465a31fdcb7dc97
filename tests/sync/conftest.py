"""Helpers of the host-sync tests: the syncs a GPU run would make, from a CPU run."""
import os

import pytest

from robustops.sync_counter import SyncCounter

# Reads that run on CPU tensors only (the code branches on the device: a GPU run skips
# them or checks with an asynchronous assert), by file and function. The counter counts
# every CPU read, since most predict a GPU sync; these do not.
CPU_ONLY = {
    ("random_init.py", "random_init"): "x_nat's NaN check, `if x_nat.device.type == 'cpu'`",
}


def _device_syncs(counter: SyncCounter) -> list:
    def cpu_only(where: str) -> bool:
        path, _, func = where.partition(" in ")
        return (os.path.basename(path.rsplit(":", 1)[0]), func) in CPU_ONLY

    return [e for e in counter.events if not cpu_only(e.where)]


@pytest.fixture
def device_syncs():
    """f(counter) -> the counter's events less the CPU-only reads of CPU_ONLY."""
    return _device_syncs


@pytest.fixture
def digits_batch(digits_model):
    """(model, x (48, 1, 8, 8), y): the digits MLP and test images it classifies right."""
    model, x, y = digits_model
    keep = (model(x).argmax(1) == y).nonzero()[:, 0][:48]
    return model, x[keep].detach(), y[keep]
