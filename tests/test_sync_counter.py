"""SyncCounter: counts the calls that read a tensor on the host, and nothing else."""
import pytest
import torch

from robustops.sync_counter import SYNC_KINDS, SyncCounter


@pytest.fixture
def t():
    return torch.tensor([0.5, -1.0, 2.0, 0.0])


@pytest.mark.parametrize("call,kind", [
    (lambda t: bool(t.any()), "item"),
    (lambda t: t.sum().item(), "item"),
    (lambda t: float(t[0]), "item"),
    (lambda t: 1 if t[2] else 0, "item"),  # `if t:` (is_nonzero) reads the value
    (lambda t: t.nonzero(), "nonzero"),
    (lambda t: torch.where(t > 0), "nonzero"),
    (lambda t: t[t > 0], "data_dependent_shape"),  # boolean-mask indexing
    (lambda t: t.masked_select(t > 0), "data_dependent_shape"),
    (lambda t: torch.equal(t, t), "equal"),
    (lambda t: t.tolist(), "tolist"),
], ids=["bool_any", "item", "float", "if_t", "nonzero", "where_mask", "mask_index",
        "masked_select", "equal", "tolist"])
def test_each_host_read_counts_once(t, call, kind):
    with SyncCounter() as counter:
        call(t)
    assert counter.count == 1, counter.summary()
    assert counter.counts == {kind: 1}
    event = counter.events[0]
    assert event.kind == kind and event.kind in SYNC_KINDS
    assert "test_sync_counter.py" in event.where  # the caller's line, not torch's


def test_tensor_ops_do_not_count(t):
    m = torch.nn.Linear(4, 3)
    with SyncCounter() as counter:
        u = torch.where(t > 0, t * 2, t.exp()).clamp(0, 1)
        m(u[None]).argmax(1)
        t[torch.tensor([0, 2])]  # integer indexing: the size is known
        u[t > 0] = 0.0  # a mask with one value runs as masked_fill
        t.sum(), t.cumsum(0), (t > 0).any(), torch.isfinite(t).all()
        t.repeat_interleave(2)
        t.to(torch.float64)
    assert counter.count == 0, counter.summary()


def test_events_name_the_op_and_summary_groups_them(t):
    with SyncCounter() as counter:
        for _ in range(3):
            t.max().item()
        t.nonzero()
    assert counter.count == 4
    assert counter.counts == {"item": 3, "nonzero": 1}
    assert [e.op for e in counter.events] == ["_local_scalar_dense"] * 3 + ["nonzero"]
    summary = counter.summary().splitlines()
    assert summary[0] == "4 host sync(s)" and summary[1].split()[0] == "3"


def test_nested_counters_and_tolist_restored(t):
    assert "tolist" not in torch.Tensor.__dict__
    with SyncCounter() as outer:
        t.tolist()
        with SyncCounter() as inner:
            t.sum().item()
            t.tolist()
    assert (outer.count, inner.count) == (3, 2)
    assert "tolist" not in torch.Tensor.__dict__
    with pytest.raises(RuntimeError, match="boom"):
        with SyncCounter():
            raise RuntimeError("boom")
    assert "tolist" not in torch.Tensor.__dict__
    with SyncCounter() as after:
        pass
    t.tolist()  # outside any counter: not recorded anywhere
    assert after.count == 0 and outer.count == 3


@pytest.mark.cuda
def test_device_copies_count_on_a_gpu():
    x = torch.ones(3, device="cuda")
    with SyncCounter() as counter:
        x.cpu()
        x.tolist()
        torch.ones(3).to("cuda")  # blocking host-to-device: waits for the stream
        torch.ones(3).pin_memory().to("cuda", non_blocking=True)  # does not wait
        x * 2
    assert counter.counts == {"device_to_host": 2, "host_to_device": 1}, counter.summary()
