"""counter_rng: every backend bit-identical to the reference, op contract, statistics."""
import pytest
import torch


from robustops.counter_rng import counter_normal, counter_uniform
from robustops.ops.counter_rng import counter_rng, counter_rng_reference, stream_base


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("normal", [False, True])
def test_backends_match_reference(kernel_backend, dtype, normal):
    idx = torch.tensor([0, 5, 2**33 + 7, 123456789], dtype=torch.int64)
    out = counter_rng(idx, 37, seed=11, stream=3, normal=normal, dtype=dtype)
    b1, b2 = (stream_base(11, 6), stream_base(11, 7)) if normal else (stream_base(11, 3),) * 2
    ref = counter_rng_reference(idx, 37, b1, b2, normal, dtype)
    assert out.dtype == dtype and out.shape == (4, 37)
    if normal and dtype == torch.float64:  # libm vs SLEEF log/cos: last-bit differences
        torch.testing.assert_close(out, ref, rtol=1e-13, atol=1e-13)
    else:
        assert torch.equal(out, ref)


def test_rows_depend_only_on_their_index():
    idx = torch.arange(10)
    full = counter_uniform(3, 1, idx, 50)
    part = counter_uniform(3, 1, idx[[7, 2]], 50)
    assert torch.equal(part, full[[7, 2]])
    assert not torch.equal(counter_uniform(4, 1, idx, 50), full)
    assert not torch.equal(counter_uniform(3, 2, idx, 50), full)


def test_statistics():
    u = counter_uniform(0, 0, torch.arange(200), 1000, torch.float64)
    assert 0 < u.min() and u.max() < 1 and abs(u.mean().item() - 0.5) < 0.003
    z = counter_normal(0, 0, torch.arange(200), 1000, torch.float64)
    assert abs(z.mean().item()) < 0.01 and abs(z.std().item() - 1) < 0.01
    assert abs(((z > 1.96).double().mean() - 0.025).item()) < 0.002


def test_opcheck_and_errors():
    idx = torch.arange(3)
    op = torch.ops.robustops.counter_rng.default
    torch.library.opcheck(op, (idx, 8, stream_base(1, 1), stream_base(1, 2), True, torch.float32))
    torch.library.opcheck(op, (idx, 8, stream_base(1, 1), stream_base(1, 1), False, torch.float64))
    with pytest.raises(ValueError, match="int64"):
        counter_rng(torch.arange(3, dtype=torch.int32), 4, 0, 0)
    with pytest.raises(ValueError, match="numel"):
        counter_rng(idx, -1, 0, 0)
    with pytest.raises(ValueError, match="dtype"):
        counter_rng(idx, 4, 0, 0, dtype=torch.float16)
    assert counter_rng(idx, 0, 0, 0).shape == (3, 0)


@pytest.mark.parametrize("be", ["reference", "cpp", "triton"])
def test_seed_and_stream_must_be_ints(be):
    from robustops import backend
    if be not in backend.available():
        pytest.skip(f"{be} not available")
    np = pytest.importorskip("numpy")
    idx = torch.arange(3)
    with backend.use(be):
        counter_rng(idx, 4, 1, 0)  # cached key (1, 0, False): 1.0 == 1 must not hit it
        for seed in (1.5, 1.0, "1", None, True):
            with pytest.raises(TypeError, match=r"^seed must be an int, got"):
                counter_rng(idx, 4, seed, 0)
        for stream in (0.5, 0.0, "0", False):
            with pytest.raises(TypeError, match=r"^stream must be an int, got"):
                counter_rng(idx, 4, 1, stream)
        with pytest.raises(TypeError, match="seed must be an int, got 1.5 \\(float\\)"):
            counter_uniform(1.5, 0, idx, 4)
        # Integer types (numpy's) are ints.
        assert torch.equal(counter_rng(idx, 4, np.int64(7), np.int32(2), normal=True),
                           counter_rng(idx, 4, 7, 2, normal=True))
    with pytest.raises(TypeError, match="seed must be an int"):
        stream_base(2.5, 0)
    with pytest.raises(TypeError, match="stream must be an int"):
        stream_base(2, "x")


def test_compiles_fullgraph():
    torch._dynamo.reset()
    f = torch.compile(lambda i: counter_normal(1, 2, i, 16) * 2, fullgraph=True)
    idx = torch.arange(4)
    assert torch.equal(f(idx), counter_normal(1, 2, idx, 16) * 2)


def test_float32_uniforms_stay_below_one():
    # The largest possible value, (2^23 - 0.5) / 2^23, must not round up to 1.0 in float32.
    top = torch.tensor((2**23 - 0.5) / 2**23, dtype=torch.float64).float()
    assert top < 1.0
    u = counter_rng(torch.arange(300), 4000, 0, 0)
    assert u.max() < 1.0 and u.min() > 0.0
