"""channel_kmeans: the paper's per-sample procedure (numpy), cpp and triton (interpreted) vs
the batched reference, seeded initialisation, convergence masks, empty groups, the op contract."""
import numpy as np
import pytest
import torch

from robustops import backend, channel_kmeans
from robustops.bench.tenet_reference import kmeans_batch, kmeans_objective
from robustops.ops.channel_kmeans import (KMEANS_INIT_STREAM, channel_kmeans_reference,
                                          kmeans_init)
from robustops.ops.counter_rng import stream_base

BACKENDS = ["reference", "cpp"]


def clustered(b, c, h, w, protos=5, noise=0.5, seed=0, dtype=torch.float64):
    """ReLU'd channels scattered around a few prototypes per sample (like real features)."""
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(b, protos, h * w, generator=g, dtype=torch.float64)
    lab = torch.randint(0, protos, (b, c), generator=g)
    x = p[torch.arange(b)[:, None], lab] + noise * torch.randn(b, c, h * w, generator=g,
                                                               dtype=torch.float64)
    return torch.relu(x).reshape(b, c, h, w).to(dtype)


def _use(be):
    if be not in backend.available():
        pytest.skip(f"{be} not available")
    return backend.use(be)


# ----------------------------------------------------------------------------- paper procedure


@pytest.mark.parametrize("be", BACKENDS)
def test_matches_paper_procedure_fp64(be):
    # Same initial medoids: the same trajectory (assignment, medoids, iterations), sample by
    # sample, as the paper's per-sample loop. (Exact ties are broken by rounding, e.g. the
    # two members of a two-channel group are equidistant from its mean: the data here has
    # no group that small.)
    f = clustered(6, 64, 3, 3, protos=4, seed=1)
    init = kmeans_init(6, 64, 4, seed=3)
    with _use(be):
        r = channel_kmeans(f, 4, init=init)
    a, m, it = kmeans_batch(f.numpy(), init.numpy())
    np.testing.assert_array_equal(r.assignment.numpy(), a)
    np.testing.assert_array_equal(r.medoids.numpy(), m)
    np.testing.assert_array_equal(r.iterations.numpy(), it)
    assert min(np.bincount(row, minlength=4).min() for row in a) >= 3
    assert r.assignment.dtype == r.medoids.dtype == r.iterations.dtype == torch.int64


# A two-channel group {0, 2}: both members are equidistant from its mean in exact
# arithmetic, and the paper's float32 arithmetic (difference, square, sum) breaks the tie
# towards channel 0 (the distances round equal, the first channel wins); the former
# ||x||^2 - 2 <x, m> + ||m||^2 form rounded it towards channel 2.
_TIE_F = np.array([[0.4116305410861969, 1.042513370513916, -0.12853465974330902],
                   [1.3664634227752686, -0.6651946902275085, 0.35151007771492004],
                   [0.9034701585769653, 0.0940122976899147, -0.7434992790222168]],
                  dtype=np.float32).reshape(1, 3, 1, 3)


@pytest.mark.parametrize("be", BACKENDS + ["triton"])
def test_two_channel_group_tie_breaks_as_paper_fp32(be):
    f, init = torch.from_numpy(_TIE_F), torch.tensor([[0, 2]])
    a, m, it = kmeans_batch(_TIE_F, init.numpy())
    # The paper's transcription: channels 0 and 2 end in group 0, whose medoid stays 0.
    np.testing.assert_array_equal(a, [[0, 1, 0]])
    np.testing.assert_array_equal(m, [[0, 1]])
    x = _TIE_F.reshape(3, 3)
    mean = x[[0, 2]].mean(0)
    assert ((x[0] - mean) ** 2).sum() == ((x[2] - mean) ** 2).sum()  # the rounded tie
    with _use(be):
        r = channel_kmeans(f, 2, init=init)
    np.testing.assert_array_equal(r.assignment.numpy(), a)
    np.testing.assert_array_equal(r.medoids.numpy(), m)
    np.testing.assert_array_equal(r.iterations.numpy(), it)


@pytest.mark.parametrize("be", BACKENDS + ["triton"])
def test_small_maps_match_paper_fp32(be):
    # Maps of fewer than 8 values (every sum over H*W runs in order, in numpy as here):
    # random float32 data, with many two-channel groups on the way, follows the paper's
    # trajectory exactly, ties included.
    rng = np.random.default_rng(1)
    f = rng.standard_normal((40, 5, 1, 3)).astype(np.float32)
    init = kmeans_init(40, 5, 2, seed=4)
    a, m, it = kmeans_batch(f, init.numpy())
    with _use(be):
        r = channel_kmeans(torch.from_numpy(f), 2, init=init)
    np.testing.assert_array_equal(r.assignment.numpy(), a)
    np.testing.assert_array_equal(r.medoids.numpy(), m)
    np.testing.assert_array_equal(r.iterations.numpy(), it)


@pytest.mark.parametrize("be", BACKENDS)
@pytest.mark.parametrize("kind", ["clustered", "uniform"])
def test_objective_equal_or_lower_fp32(be, kind):
    b, c, k = 4, 96, 6
    f = (clustered(b, c, 5, 5, seed=2, dtype=torch.float32) if kind == "clustered"
         else torch.rand(b, c, 5, 5, generator=torch.Generator().manual_seed(2)))
    init = kmeans_init(b, c, k, seed=5)
    with _use(be):
        r = channel_kmeans(f, k, init=init)
    a, _, _ = kmeans_batch(f.numpy(), init.numpy())
    ours = kmeans_objective(f.numpy(), r.assignment.numpy())
    theirs = kmeans_objective(f.numpy(), a)
    assert np.all(ours <= theirs * (1 + 1e-6)), (ours, theirs)


def _duplicate_channels(dtype=torch.float64):
    """Sample 0: channels 0-3 are dead (all zero), initial medoids 0 and 1 among them, so
    group 1 loses every channel to group 0 (ties go to the lower group) on iteration 1."""
    f = clustered(2, 24, 3, 3, protos=3, seed=4, dtype=dtype)
    f[0, :4] = 0
    init = torch.tensor([[0, 1, 10], [5, 6, 7]])
    return f, init


@pytest.mark.parametrize("be", BACKENDS)
def test_empty_group_is_reseeded(be):
    # reseed_farthest=True (the default follows the paper: test_channel_kmeans_fidelity.py).
    f, init = _duplicate_channels()
    with _use(be):
        r = channel_kmeans(f, 3, init=init, reseed_farthest=True)
    for i in range(2):
        assert len(set(r.medoids[i].tolist())) == 3
    assert not torch.isnan(f).any()
    # The paper's code takes the NaN mean of the empty group and lands on the lowest free
    # channel (numpy's argmin of NaN); the farthest-channel re-seed ends no worse.
    a, _, _ = kmeans_batch(f.numpy(), init.numpy())
    ours = kmeans_objective(f.numpy(), r.assignment.numpy())
    theirs = kmeans_objective(f.numpy(), a)
    assert np.all(ours <= theirs * (1 + 1e-9)), (ours, theirs)
    assert len(np.unique(r.assignment[0].numpy())) == 3  # the re-seeded group is used


@pytest.mark.parametrize("be", BACKENDS)
def test_all_channels_identical(be):
    # Every distance ties: one group holds everything, the others stay empty; no NaN,
    # distinct medoids, converged after one iteration.
    f = torch.ones(2, 8, 2, 2, dtype=torch.float32)
    with _use(be):
        r = channel_kmeans(f, 3, seed=1)
    assert (r.assignment == 0).all()
    assert r.iterations.tolist() == [1, 1]
    assert all(len(set(m.tolist())) == 3 for m in r.medoids)


# ----------------------------------------------------------------------------- batched vs cpp


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(3, 17, 3, 5, 4), (2, 9, 1, 1, 9), (2, 12, 4, 4, 1)],
                         ids=["odd", "k_eq_c", "k1"])
def test_cpp_matches_batched_reference(dtype, shape):
    if "cpp" not in backend.available():
        pytest.skip("cpp not available")
    b, c, h, w, k = shape
    f = clustered(b, c, h, w, seed=6, dtype=dtype)
    init = kmeans_init(b, c, k, seed=7)
    with backend.use("cpp"):
        r = channel_kmeans(f, k, init=init)
    ref = channel_kmeans_reference(f, init, 50, 1e-4)
    for got, want in zip(r, ref):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("be", BACKENDS)
def test_layouts_and_per_sample_convergence(be):
    # Samples that converge after different numbers of iterations (3, 2, 4, 2): each
    # equals the same sample clustered alone (the batch's convergence mask freezes
    # finished samples) and the paper's loop.
    f = torch.cat([clustered(2, 48, 3, 3, protos=3, noise=0.3, seed=8),
                   clustered(2, 48, 3, 3, protos=6, noise=0.3, seed=9)])
    init = kmeans_init(4, 48, 3, seed=9)
    with _use(be):
        full = channel_kmeans(f.contiguous(memory_format=torch.channels_last), 3, init=init)
        alone = [channel_kmeans(f[i:i + 1], 3, init=init[i:i + 1]) for i in range(4)]
    a, m, it = kmeans_batch(f.numpy(), init.numpy())
    assert full.iterations.tolist() == it.tolist() == [3, 2, 4, 2]
    np.testing.assert_array_equal(full.assignment.numpy(), a)
    for i in range(4):
        assert torch.equal(full.assignment[i], alone[i].assignment[0])
        assert torch.equal(full.medoids[i], alone[i].medoids[0])
    # max_iter caps every sample; the result is the paper's state after max_iter iterations.
    with _use(be):
        capped = channel_kmeans(f, 3, init=init, max_iter=2)
    a, m, it = kmeans_batch(f.numpy(), init.numpy(), max_iter=2)
    np.testing.assert_array_equal(capped.assignment.numpy(), a)
    np.testing.assert_array_equal(capped.medoids.numpy(), m)
    assert capped.iterations.tolist() == [2, 2, 2, 2]


# ----------------------------------------------------------------------------- triton


def _triton_matches_reference(f, k, init, max_iter, reseed_farthest=False):
    """The triton backend (interpreted on CPU) runs the reference's trajectory exactly."""
    if "triton" not in backend.available():
        pytest.skip("triton not available")
    with backend.use("triton"):
        r = channel_kmeans(f, k, init=init, max_iter=max_iter, reseed_farthest=reseed_farthest)
    ref = channel_kmeans_reference(f, init, max_iter, 1e-4, reseed_farthest)
    for got, want in zip(r, ref):
        assert got.dtype == torch.int64
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    return r


# The interpreter runs ~1 ms per program and every iteration launches all four kernels:
# small inputs, and max_iter a little above the iterations these inputs need.
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(3, 17, 3, 5, 4, 5), (2, 9, 1, 1, 9, 5), (2, 12, 4, 4, 1, 5),
                                   (2, 20, 9, 9, 3, 4)], ids=["odd", "k_eq_c", "k1", "n_blocks"])
def test_triton_matches_reference(dtype, shape):
    # (Data with no group of exactly two channels on the way: its two members tie for the
    # snap, a tie broken by rounding.)
    b, c, h, w, k, protos = shape
    f = clustered(b, c, h, w, protos=protos, seed=6, dtype=dtype)
    r = _triton_matches_reference(f, k, kmeans_init(b, c, k, seed=7), 4)
    assert (r.iterations > 1).any()  # medoids moved


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triton_ties(dtype):
    # Small integers: exact arithmetic, so many channels are equidistant from two medoids
    # (first group wins) and many duplicate one another (first channel wins the snap).
    g = torch.Generator().manual_seed(17)
    f = torch.randint(0, 3, (3, 20, 2, 2), generator=g).to(dtype)
    init = kmeans_init(3, 20, 5, seed=2)
    x = f.reshape(3, 20, 4)
    d = torch.cdist(x, x.gather(1, init[..., None].expand(3, 5, 4))) ** 2
    assert ((d == d.min(-1, keepdim=True).values).sum(-1) > 1).any()  # ties happen
    _triton_matches_reference(f, 5, init, 4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triton_empty_groups(dtype):
    # Duplicate dead channels empty a group, which is re-seeded as the reference does
    # (both modes).
    f, init = _duplicate_channels(dtype)
    r = _triton_matches_reference(f, 3, init, 4, reseed_farthest=True)
    assert len(np.unique(r.assignment[0].numpy())) == 3
    _triton_matches_reference(f, 3, init, 4)
    # All channels identical: no channel to re-seed at, two groups stay empty.
    r = _triton_matches_reference(torch.ones(2, 8, 2, 2, dtype=dtype), 3,
                                  kmeans_init(2, 8, 3, seed=1), 2)
    assert (r.assignment == 0).all() and r.iterations.tolist() == [1, 1]


def test_triton_per_sample_convergence_and_layouts():
    # Samples converging after 3, 2, 4 and 2 iterations freeze in turn; channels_last input;
    # a max_iter cap; a seeded run draws kmeans_init's medoids.
    f = torch.cat([clustered(2, 24, 3, 3, protos=3, noise=0.3, seed=8),
                   clustered(2, 24, 3, 3, protos=6, noise=0.3, seed=9)])
    init = kmeans_init(4, 24, 3, seed=9)
    r = _triton_matches_reference(f.contiguous(memory_format=torch.channels_last), 3, init, 5)
    assert len(set(r.iterations.tolist())) > 1 and (r.iterations < 5).all()
    _triton_matches_reference(f, 3, init, 2)
    with backend.use("triton"):
        seeded = channel_kmeans(f, 3, seed=9, max_iter=2)
    assert torch.equal(seeded.medoids, _triton_matches_reference(f, 3, init, 2).medoids)


# ----------------------------------------------------------------------------- initialisation


def test_init_is_keyed_by_sample_index():
    init = kmeans_init(8, 20, 6, seed=11)
    assert init.shape == (8, 6) and init.dtype == torch.int64
    assert all(len(set(r.tolist())) == 6 for r in init)
    assert ((init >= 0) & (init < 20)).all()
    # Batch-split invariant: the second half with index offset 4 draws the same channels.
    torch.testing.assert_close(kmeans_init(4, 20, 6, seed=11, index=4), init[4:])
    torch.testing.assert_close(kmeans_init(2, 20, 6, seed=11, index=torch.tensor([6, 1])),
                               init[[6, 1]])
    assert not torch.equal(kmeans_init(8, 20, 6, seed=12), init)
    # The K smallest keys: K = C is a permutation of the channels.
    assert sorted(kmeans_init(1, 7, 7, seed=0)[0].tolist()) == list(range(7))


@pytest.mark.parametrize("be", BACKENDS)
def test_seeded_run_starts_from_kmeans_init(be):
    # The C++ kernel draws the medoids itself; they are kmeans_init's.
    f = clustered(5, 40, 3, 3, seed=16, dtype=torch.float32)
    with _use(be):
        seeded = channel_kmeans(f, 4, seed=21, index=7, max_iter=1)
        given = channel_kmeans(f, 4, init=kmeans_init(5, 40, 4, seed=21, index=7), max_iter=1)
    assert torch.equal(seeded.assignment, given.assignment)
    assert torch.equal(seeded.medoids, given.medoids)


def test_seeded_grouping_is_batch_split_invariant():
    f = clustered(6, 32, 3, 3, seed=12, dtype=torch.float32)
    full = channel_kmeans(f, 4, seed=3)
    tail = channel_kmeans(f[3:], 4, seed=3, index=3)
    assert torch.equal(full.assignment[3:], tail.assignment)
    assert torch.equal(full.medoids[3:], tail.medoids)


# ----------------------------------------------------------------------------- op contract


def test_empty_batch():
    r = channel_kmeans(torch.zeros(0, 5, 2, 2), 3)
    assert r.assignment.shape == (0, 5) and r.medoids.shape == (0, 3)
    assert r.iterations.shape == (0,)


@pytest.mark.parametrize("given_index", [False, True])
@pytest.mark.parametrize("given_init", [False, True])
def test_opcheck(given_init, given_index):
    f = clustered(2, 10, 2, 3, seed=13, dtype=torch.float32)
    init = kmeans_init(2, 10, 3, seed=0) if given_init else None
    index = torch.arange(2) if given_index else None  # None: samples 0..B-1
    torch.library.opcheck(torch.ops.robustops.channel_kmeans.default,
                          (f, init, index, 12345, 3, 50, 1e-4))
    torch.library.opcheck(torch.ops.robustops.channel_kmeans.default,
                          (f.clone().requires_grad_(True), init, index, 12345, 3, 50, 1e-4))


def test_op_is_the_public_function():
    # torch.ops.robustops.channel_kmeans is the C++ op the public function calls once:
    # same result, no graph behind a feature map that requires grad.
    f = clustered(3, 12, 2, 2, seed=18, dtype=torch.float32)
    with _use("cpp"):
        want = channel_kmeans(f, 4, seed=6, index=5)
        seeded = channel_kmeans(f, 4, seed=6)
    x = f.clone().requires_grad_(True)
    base = stream_base(6, KMEANS_INIT_STREAM)
    got = torch.ops.robustops.channel_kmeans(x, None, torch.arange(5, 8), base, 4, 50, 1e-4)
    assert all(torch.equal(g, w) for g, w in zip(got, want))
    assert not any(t.requires_grad for t in got)
    # index None is samples 0..B-1
    got = torch.ops.robustops.channel_kmeans(f, None, None, base, 4, 50, 1e-4)
    assert torch.equal(got[0], seeded.assignment)


def test_no_cuda_kernel_and_no_cuda_backend():
    # There is no hand-written CUDA kernel: no CUDA registration and no backend called
    # "cuda" (on a GPU, auto runs the Triton kernels or the batched reference).
    assert torch._C._dispatch_has_kernel_for_dispatch_key("robustops::channel_kmeans", "CPU")
    assert not torch._C._dispatch_has_kernel_for_dispatch_key("robustops::channel_kmeans", "CUDA")
    with backend.use("cuda"), pytest.raises(RuntimeError, match="no 'cuda' backend"):
        channel_kmeans(torch.rand(1, 4, 2, 2), 2)


def test_op_checks_its_arguments():
    # Direct calls of the op get the public function's messages from its C++ checks.
    f = torch.rand(2, 6, 3, 3)
    op = torch.ops.robustops.channel_kmeans
    with pytest.raises(ValueError, match=r"num_groups must be in \[1, C\] = \[1, 6\]"):
        op(f, None, None, 0, 7, 50, 1e-4)
    with pytest.raises(ValueError, match=r"init\[1\] = \[3, 3, 4\] must hold 3 distinct"):
        op(f, torch.tensor([[0, 1, 2], [3, 3, 4]]), None, 0, 3, 50, 1e-4)
    with pytest.raises(ValueError, match=r"index must be an integer tensor of shape \(2,\)"):
        op(f, None, torch.arange(3), 0, 3, 50, 1e-4)
    with pytest.raises(ValueError, match="base must be a 32-bit counter key"):
        op(f, None, None, -1, 3, 50, 1e-4)
    with pytest.raises(ValueError, match="max_iter must be an int >= 1"):
        op(f, None, None, 0, 3, 0, 1e-4)
    with pytest.raises(ValueError, match=r"4-D \(B, C, H, W\)"):
        op(f[0], None, None, 0, 3, 50, 1e-4)


def test_compiles_fullgraph():
    torch._dynamo.reset()
    f = clustered(2, 12, 2, 2, seed=14, dtype=torch.float32)

    def group(x):
        return channel_kmeans(x, 3, seed=5).assignment

    compiled = torch.compile(group, fullgraph=True)
    assert torch.equal(compiled(f), group(f))


def _bad_cases():
    f = torch.rand(2, 6, 3, 3)
    return [
        ("3-D", dict(features=f[0]), r"4-D \(B, C, H, W\)"),
        ("int dtype", dict(features=f.to(torch.int64)), "float32 or float64"),
        ("half", dict(features=f.half()), "float32 or float64"),
        ("K = 0", dict(num_groups=0), r"num_groups must be in \[1, C\] = \[1, 6\]"),
        ("K > C", dict(num_groups=7), r"num_groups must be in \[1, C\]"),
        ("float K", dict(num_groups=2.0), r"num_groups must be an int, got 2.0 \(float\)",
         TypeError),
        ("max_iter 0", dict(max_iter=0), "max_iter must be an int >= 1"),
        ("negative threshold", dict(shift_threshold=-1e-4), "shift_threshold must be"),
        ("nan threshold", dict(shift_threshold=float("nan")), "shift_threshold must be"),
        ("seed", dict(seed=1.5), r"seed must be an int, got 1.5 \(float\)", TypeError),
        ("reseed flag", dict(reseed_farthest=1), "reseed_farthest must be a bool", TypeError),
        ("max_iter float", dict(max_iter=5.0), "max_iter must be an int >= 1", TypeError),
        ("threshold str", dict(shift_threshold="0"), "shift_threshold must be a finite number",
         TypeError),
        ("index shape", dict(index=torch.arange(3)), "index must be an integer tensor"),
        ("init shape", dict(init=torch.zeros(2, 2, dtype=torch.int64)), r"init must be a \(2, 3\)"),
        ("init dtype", dict(init=torch.zeros(2, 3)), "int64"),
        ("init repeats", dict(init=torch.tensor([[0, 1, 2], [3, 3, 4]])),
         r"init\[1\] = \[3, 3, 4\] must hold 3 distinct"),
        ("init range", dict(init=torch.tensor([[0, 1, 6], [0, 1, 2]])), r"in \[0, 6\)"),
    ]


@pytest.mark.parametrize("case", _bad_cases(), ids=lambda c: c[0])
def test_bad_input_raises_clear_error(case):
    _, override, match, *error = case
    args = dict(features=torch.rand(2, 6, 3, 3), num_groups=3)
    args.update(override)
    features, k = args.pop("features"), args.pop("num_groups")
    with pytest.raises(error[0] if error else ValueError, match=match):
        channel_kmeans(features, k, **args)


# ----------------------------------------------------------------------------- GPU


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gpu_triton_matches_reference(dtype):
    # Auto runs the Triton kernels on CUDA tensors; the batched reference on the same GPU
    # gives the same trajectory (their sums may round apart: near-ties only).
    if backend.triton_interpreted():
        pytest.skip("Triton runs interpreted in this session")
    if "triton" not in backend.available():
        pytest.skip("triton backend not available")
    f = clustered(16, 128, 8, 8, seed=15, dtype=dtype).cuda()
    init = kmeans_init(16, 128, 6, seed=1, device="cuda")
    with backend.use("auto"):
        auto = channel_kmeans(f, 6, init=init)
    with backend.use("triton"):
        got = channel_kmeans(f, 6, init=init)
    ref = channel_kmeans_reference(f, init, 50, 1e-4)
    assert all(torch.equal(x, y) for x, y in zip(auto, got))
    assert (got.assignment == ref[0]).float().mean().item() > 0.99
    assert (got.iterations == ref[2]).float().mean().item() > 0.9


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gpu_batched_matches_cpu(dtype):
    # Auto on CUDA tensors (the Triton kernels, or the batched composition on cuBLAS without
    # triton: the op has no CUDA kernel); same trajectory as the CPU.
    f = clustered(16, 128, 8, 8, seed=15, dtype=dtype)
    init = kmeans_init(16, 128, 6, seed=1)
    cpu = channel_kmeans_reference(f, init, 50, 1e-4)
    gpu = channel_kmeans(f.cuda(), 6, init=init.cuda())
    agree = (gpu.assignment.cpu() == cpu[0]).float().mean().item()
    assert agree > 0.99
    assert torch.equal(channel_kmeans(f.cuda(), 6, seed=1).assignment.cpu(),
                       gpu.assignment.cpu())
