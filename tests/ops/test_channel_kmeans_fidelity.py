"""channel_kmeans against the paper's own k-means run in torch (issue 15: ties, dead channels).

The oracle below restates LinusWu/TENET_Training CFG/Group.py (KMeans_GPU_FAST with its
pairwise_distance) step by step in torch, on the CPU: the distances are torch's
``((A - B) ** 2.0).sum(-1)``, the group means torch's ``mean(dim=0)``, the argmins numpy's,
so every rounding (and so every tie) goes as in the paper's code run with torch on a CPU.

Ties are constructed: channels come in pairs around prototypes far apart, and each group
starts at one channel of a pair, so every group has exactly two members, equidistant from
their mean in exact arithmetic: the snap to the nearer member is decided by how the two
float32 sums round (by the summation order, on maps of 8 values or more).
"""
import numpy as np
import pytest
import torch

from robustops import backend, channel_kmeans
from robustops.bench.tenet_reference import kmeans_batch, kmeans_objective

BACKENDS = ["cpp", "reference", "triton"]


def paper_kmeans(x: torch.Tensor, init, max_iter: int = 50, shift_threshold: float = 1e-4):
    """The paper's KMeans_GPU_FAST on one sample, in torch on the CPU.

    x: (C, N) channel vectors; init: K distinct channel indices. Returns (assignment (C,),
    medoids (K,), iterations) as numpy int64 arrays / int.
    """
    def pairwise(a, b):  # the paper's pairwise_distance: (N, 1, M) - (1, K, M), squared, summed
        return ((a.unsqueeze(1) - b.unsqueeze(0)) ** 2.0).sum(dim=-1)

    k_groups = len(init)
    centres = x[torch.as_tensor(init)]
    chosen = np.ones(k_groups)
    iteration = 0
    while True:
        nearest = np.argmin(pairwise(x, centres).numpy(), axis=1)
        before = centres.clone()
        for k in range(k_groups):
            members = x[np.where(nearest == k)]
            centres[k] = members.mean(dim=0)  # NaN for a group that lost every channel
            to_mean = pairwise(x, centres[k].unsqueeze(0)).numpy()
            pos = np.argmin(to_mean, axis=0)  # numpy: the first NaN, if any
            while pos in chosen[:k]:  # a channel already taken by an earlier group
                to_mean[pos] = np.inf
                pos = np.argmin(to_mean, axis=0)
            chosen[k] = pos[0]  # (pos has shape (1,); the numpy of the time took it as is)
        centres = x[chosen.astype(np.int64)]
        shift = torch.sum(torch.sqrt(torch.sum((centres - before) ** 2, dim=1)))
        iteration += 1
        if shift ** 2 < shift_threshold or iteration >= max_iter:
            return nearest.astype(np.int64), chosen.astype(np.int64), iteration


def paper_batch(f: torch.Tensor, init: torch.Tensor, max_iter: int = 50):
    """paper_kmeans for every sample of f (B, C, H, W): ((B, C), (B, K), (B,))."""
    x = f.reshape(f.shape[0], f.shape[1], -1)
    out = [paper_kmeans(x[i].contiguous(), init[i].tolist(), max_iter) for i in range(len(x))]
    return (np.stack([o[0] for o in out]), np.stack([o[1] for o in out]),
            np.array([o[2] for o in out]))


def paired_maps(b: int, pairs: int, h: int, w: int, seed: int, dtype=torch.float32):
    """(B, 2 * pairs, H, W) maps whose channels come in pairs (2j, 2j+1 around prototype j,
    prototypes far apart), and init (B, pairs) one random member of each pair: every group
    is a pair, so every snap is an exact-arithmetic tie."""
    g = torch.Generator().manual_seed(seed)
    protos = 4.0 * torch.randn(b, pairs, 1, h * w, generator=g, dtype=torch.float64)
    x = protos + 0.3 * torch.randn(b, pairs, 2, h * w, generator=g, dtype=torch.float64)
    f = x.reshape(b, 2 * pairs, h, w).to(dtype)
    init = 2 * torch.arange(pairs) + torch.randint(0, 2, (b, pairs), generator=g)
    return f, init


def differing_samples(result, want) -> int:
    """Samples whose assignment, medoids or iteration count differ from the oracle's."""
    a, m, it = (t.numpy() for t in result)
    return int(((a != want[0]).any(1) | (m != want[1]).any(1) | (it != want[2])).sum())


def _use(be):
    if be not in backend.available():
        pytest.skip(f"{be} not available")
    if be == "triton" and not backend.triton_interpreted():  # (these maps are CPU tensors)
        pytest.skip("triton runs CPU tensors only under its interpreter (TRITON_INTERPRET=1)")
    return backend.use(be)


# Map sizes: under 8 values (torch sums 4 interleaved scalars), at and above one vector of 8,
# several cascade blocks (16 rows of 32 values: 32 x 32 has two), odd sizes with tails.
SIZES = [(1, 3), (1, 7), (2, 4), (3, 3), (4, 4), (5, 7), (8, 8), (16, 16), (9, 13), (32, 32),
         (33, 35), (64, 64)]


@pytest.mark.parametrize("be", BACKENDS)
@pytest.mark.parametrize("hw", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_two_channel_ties_break_as_the_paper_fp32(be, hw):
    f, init = paired_maps(24, 3, *hw, seed=hw[0] * 100 + hw[1])
    want = paper_batch(f, init)
    with _use(be):
        got = channel_kmeans(f, 3, init=init)
    assert differing_samples(got, want) == 0
    # The data does exercise ties: the first snap of some pairs goes to the other member.
    assert (want[1] != init.numpy()).any()


def test_summation_order_matters():
    # The test above has teeth: numpy's sums (the former oracle) break some of the same
    # ties the other way on maps of 8 values and more.
    total = 0
    for hw in [(16, 16), (32, 32), (9, 13)]:
        f, init = paired_maps(24, 3, *hw, seed=hw[0] * 100 + hw[1])
        total += differing_samples(tuple(torch.from_numpy(np.asarray(t))
                                         for t in kmeans_batch(f.numpy(), init.numpy())),
                                   paper_batch(f, init))
    assert total > 0


@pytest.mark.parametrize("be", BACKENDS)
@pytest.mark.parametrize("hw", [(3, 3), (16, 16), (7, 9)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_large_groups_match_the_paper_fp32(be, hw):
    # Groups of 17-60 channels: the paper's means sum their members in torch's blocks of 16.
    g = torch.Generator().manual_seed(7)
    b, c, k = 6, 160, 4
    protos = torch.randn(b, k, hw[0] * hw[1], generator=g)
    lab = torch.randint(0, k, (b, c), generator=g)
    f = (protos[torch.arange(b)[:, None], lab] + 0.8 * torch.randn(b, c, hw[0] * hw[1],
                                                                     generator=g))
    f = torch.relu(f).reshape(b, c, *hw)
    init = torch.stack([torch.randperm(c, generator=g)[:k] for _ in range(b)])
    want = paper_batch(f, init)
    with _use(be):
        got = channel_kmeans(f, k, init=init)
    assert differing_samples(got, want) == 0


def dead_channel_maps(dtype=torch.float32):
    """Maps with dead (all-zero) channels, some initial medoids among them: identical
    medoids, so the later group loses every channel to the earlier one and empties."""
    g = torch.Generator().manual_seed(3)
    b, c, k = 8, 24, 4
    f = torch.relu(torch.randn(b, c, 5, 5, generator=g)).to(dtype)
    init = torch.stack([torch.randperm(c, generator=g)[:k] for _ in range(b)])
    for i in range(b):
        dead = torch.randperm(c, generator=g)[:6 + i % 4].tolist()
        dead += init[i, :2 + i % 2].tolist()  # two or three initial medoids are dead
        f[i, dead] = 0
    return f, init


@pytest.mark.parametrize("be", BACKENDS)
def test_dead_channels_follow_the_paper_by_default(be):
    f, init = dead_channel_maps()
    want = paper_batch(f, init)
    with _use(be):
        got = channel_kmeans(f, 4, init=init)
    assert differing_samples(got, want) == 0
    # Groups did empty out on the way (the paper's NaN mean: the lowest free channel).
    assert any(len(np.unique(row)) < 4 for row in want[0])


@pytest.mark.parametrize("be", BACKENDS)
def test_reseed_farthest_is_the_other_mode(be):
    # reseed_farthest=True re-seeds an empty group at the free channel farthest from its
    # centre: other groupings than the paper's, with a lower k-means objective overall
    # (per sample it is a different local optimum, not always a better one).
    f, init = dead_channel_maps()
    want = paper_batch(f, init)
    with _use(be):
        got = channel_kmeans(f, 4, init=init, reseed_farthest=True)
    assert differing_samples(got, want) > 0
    ours = kmeans_objective(f.numpy(), got.assignment.numpy())
    theirs = kmeans_objective(f.numpy(), want[0])
    assert ours.sum() < theirs.sum()
