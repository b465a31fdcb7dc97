"""channel_kmeans: TENET's per-sample k-means over the channels of a feature map, batched.

For every sample of F (B, C, H, W), the C channel vectors (H*W values each) are grouped
into K groups around medoids (centres that are always real channels), as the paper's
code does (METHODS.md section 2, step 2; LinusWu/TENET_Training CFG/Group.py):

1. assign each channel to its nearest medoid: squared Euclidean distance, computed as the
   paper's code does, torch's ((x - m) ** 2).sum(-1) (difference first, in the features'
   dtype, summed in the order of torch's CPU sum), so ties round as there; exact ties go
   to the lower group;
2. each group's mean (summed as torch's x[members].mean(dim=0) sums); snap it to the
   nearest real channel, group by group in order, skipping channels already taken by
   earlier groups of this iteration (so the K medoids stay distinct);
3. shift = sum over groups of the medoids' displacement; a sample stops once
   shift^2 < shift_threshold, or after max_iter iterations.

The result is the assignment computed at the start of the last iteration and the medoids
after it (what the paper's code returns), plus the iterations each sample ran.

Empty groups: a group loses all its channels only when two medoids are identical
vectors (a channel is at distance 0 from itself), e.g. two dead all-zero channels. The
paper's code then takes the mean of nothing (NaN), which numpy's argmin turns into the
lowest-index free channel: what happens here by default (reseed_farthest=False), so maps
with dead channels group as in the paper. reseed_farthest=True re-seeds an empty group at
the free channel farthest from its own centre instead (the usual k-means repair: that
channel then forms a group of its own; a different grouping from the paper's, usually of
lower objective). Either way a group can stay empty (every free channel duplicates a
medoid), and the mask and loss ops treat it as absent.

Summation order (the two-channel ties): the paper's distances are torch's CPU sums of a
contiguous row (cascade_sum: 8 float32 / 4 float64 lanes, four vectors per step, blocks
of 16 steps in a three-level cascade, then the lanes in order; see
csrc/cpu/channel_kmeans.cpp) and its group means torch's column sums over the members.
The C++ and Triton kernels and the reference sum in that order (the kernels restate it;
the reference calls torch's sum and restates the mean's order with scatter-adds), so on the
CPU (Triton: under its interpreter) their assignments, medoids and iteration counts equal
the paper's code run with torch on a CPU, ties included
(tests/ops/test_channel_kmeans_fidelity.py). Not covered: the paper's default device is
CUDA, whose reductions sum in yet another order; and CPUs where torch's vectors are not 32
bytes wide (the lane count here is 32 bytes).

Non-finite features: refused with a ValueError on the CPU (the paper's argmin would pick
the first NaN); not checked on a GPU (no host synchronisation).

Initialisation: K distinct channels per sample from the counter-based generator
(robustops.counter_rng) keyed by (seed, global sample index): the C uniforms of a sample
order its channels and the K smallest are the initial medoids (kmeans_init), so a
sample's grouping does not depend on its batch, the device or the number of processes.
`init` (B, K) overrides it (e.g. to replay another implementation's draw; checked on
the host, one read).

Backends: ``cpp`` (CPU) runs each sample to its own convergence inside one C++ call
(which also draws the initial medoids), with the sample's data in cache and only the
medoids that moved and the groups that changed recomputed. ``triton``
(robustops/triton/channel_kmeans.py; what ``auto`` picks for CUDA tensors when triton is
installed) runs the same iteration as the reference in four or five fused launches per
iteration (distances + argmin without a (B, C, K) tensor, group means (one launch per kind
of column), snap keys, snap + shift + state update). ``reference`` (what CUDA tensors run without triton) is the batched PyTorch
composition below: GEMMs, argmin, scatter-adds. There is no ``cuda`` backend: this op has
no CUDA kernel. Both GPU paths run max_iter iterations with a per-sample convergence mask
and no host synchronisation (no .item(), no branch on data), so they stay asynchronous on
a GPU. All round alike (kernels/channel_kmeans.h fixes the operation order) up to the
order of their sums (above). Ties in exact arithmetic (the two members of a two-channel
group are equidistant from its mean) are broken by rounding, in the paper's code as here.

Layers: the op ``robustops::channel_kmeans`` is declared in C++ (csrc/ops/channel_kmeans.cpp,
with its argument checks and autograd kernel) and runs the CPU kernel registered in
csrc/cpu/channel_kmeans.cpp (there is no CUDA registration: a CUDA tensor given to the op
itself gets the dispatcher's "no kernel for CUDA" error). This file holds the public
function (one call of the op on the CPU), the fake kernel, the batched reference and the
Triton backend, run as ``robustops::channel_kmeans_reference`` / ``_triton``.

No gradient: the assignment is discrete (the input is detached).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Union

import torch
from torch import Tensor
from torch.compiler import is_compiling

from ..arguments import non_negative, positive_int, require_bool, require_int, require_tensor
from .. import backend
from ..counter_rng import sample_index
from .counter_rng import stream_base

__all__ = ["channel_kmeans", "channel_kmeans_reference", "kmeans_init", "ChannelKMeans",
           "KMEANS_INIT_STREAM"]

OP = "channel_kmeans"
# No "cuda": the op has no CUDA kernel (auto runs triton, else the reference, on a GPU).
BACKENDS = ("reference", "cpp", "triton")
# Counter stream of the initial medoids ("TK"): apart from the other ops' streams.
KMEANS_INIT_STREAM = 0x544B


class ChannelKMeans(NamedTuple):
    """channel_kmeans' result (all int64 on the features' device)."""

    assignment: Tensor  # (B, C): group of every channel, in [0, K)
    medoids: Tensor     # (B, K): channel index of every group's centre (distinct)
    iterations: Tensor  # (B,): iterations run, in [1, max_iter]


# ----------------------------------------------------------------------------- initialisation


def _init_from_base(index: Tensor, channels: int, num_groups: int, base: int) -> Tensor:
    """(B, K) initial medoids from the 32-bit counter key `base` (kmeans_init's rule)."""
    u = torch.ops.robustops.counter_rng(index, channels, base, base, False, torch.float64)
    bits = torch.floor(u * 8388608.0).to(torch.int64)  # u = (bits + 0.5) / 2^23 exactly
    keys = bits * channels + torch.arange(channels, device=index.device, dtype=torch.int64)
    return torch.topk(keys, num_groups, dim=1, largest=False, sorted=True).indices


def kmeans_init(batch: int, channels: int, num_groups: int, seed: int = 0,
                index: Union[None, int, Tensor] = None,
                device: Union[str, torch.device] = "cpu") -> Tensor:
    """K distinct random channels per sample, (B, K) int64, keyed by (seed, sample index).

    Channel c of sample b gets the integer key bits * C + c, where bits are the 23 random
    bits of the counter uniform u(seed, KMEANS_INIT_STREAM, index[b], c) (keys are exact and
    distinct); the K smallest keys, in increasing order, are the medoids. channel_kmeans
    draws exactly these (the C++ kernel draws them itself, in the same pass).
    """
    idx = sample_index(batch, index, torch.device(device))
    return _init_from_base(idx, channels, num_groups, stream_base(seed, KMEANS_INIT_STREAM))


# ----------------------------------------------------------------------------- reference


def _sq_dist(x: Tensor, m: Tensor) -> Tensor:
    """(B, C) squared distances of the rows of x (B, C, N) to m (B, N), as the paper's
    pairwise_distance computes them: ((x - m) ** 2).sum(-1)."""
    diff = x - m[:, None, :]
    return (diff * diff).sum(-1)


def _cascade_sums(values: Tensor, slot: Tensor, pos: Tensor, items: Tensor, slots: int) -> Tensor:
    """Per slot, the sum of its items in the order of torch's multi_row_sum (SumKernel.cpp):
    items in blocks of 16 (each block summed in order from 0), full blocks added into a
    three-level cascade (a level passed on once 16 blocks filled it), then
    ((partial last block + level 1) + level 2) + level 3.

    values (B, R, M); slot (B, R) in [0, slots] (slots: dropped); pos (B, R) the item's
    position in its slot's sequence (items in increasing R order); items (B, slots) the
    number of items per slot. Returns (B, slots, M). (Blocks of 16: torch's for fewer than
    2^20 items.)
    """
    b, r, m = values.shape
    nq = r // 16 + 1
    idx = (slot * nq + pos // 16)[..., None].expand(b, r, m)
    blocks = values.new_zeros(b, (slots + 1) * nq, m).scatter_add_(1, idx, values)
    blocks = blocks.view(b, slots + 1, nq, m)[:, :slots]
    full = items // 16
    levels = [values.new_zeros(b, slots, m) for _ in range(3)]
    for q in range(nq - 1):
        is_full = (q < full)[..., None]
        levels[0] = levels[0] + torch.where(is_full, blocks[:, :, q], 0)
        for lv in (1, 2):  # blocks 16, 256 passed on
            if (q + 1) % (16 ** lv) == 0:
                levels[lv] = levels[lv] + torch.where(is_full, levels[lv - 1], 0)
                levels[lv - 1] = torch.where(is_full, 0, levels[lv - 1])
    tail = blocks.gather(2, full[..., None, None].expand(b, slots, 1, m))[:, :, 0]
    return ((tail + levels[0]) + levels[1]) + levels[2]


def _paper_group_means(x: Tensor, a: Tensor, counts: Tensor, k: int) -> Tensor:
    """(B, K, N) means of the groups of a (B, C) over x (B, C, N) rounded as the paper's
    x[members].mean(dim=0) in torch on the CPU (an empty group's mean: 0): the sum over the
    members of torch's outer reduction, then / count. Columns [0, Ns) (Ns = 4L * floor(N / 4L),
    or 4 * floor(N / 4) below L = 32 bytes of lanes) add the members in order (_cascade_sums);
    the rest take them four at a time (member 4t + j into sum j, rows of four cascaded
    likewise, the count % 4 last members into sum 0, then sum 0 + 1 + 2 + 3). As
    csrc/cpu/channel_kmeans.cpp (torch_mean_rows) computes them."""
    b, c, n = x.shape
    lanes = 32 // x.element_size()
    cnt = counts.to(torch.int64)
    if n == 1:  # one contiguous row of members per group: torch's own sum, group by group
        out = x.new_zeros(b, k, 1)
        for i in range(b):
            for j in range(k):
                members = x[i, a[i] == j, 0]
                if members.numel():
                    out[i, j, 0] = members.sum() / members.numel()
        return out
    block = 4 * lanes if n >= lanes else 4
    ns = (n // block) * block
    rank = torch.nn.functional.one_hot(a, k).cumsum(1).gather(2, a[..., None])[..., 0] - 1
    sums = []
    if ns:
        sums.append(_cascade_sums(x[..., :ns], a, rank, cnt, k))
    if ns < n:
        rest = x[..., ns:]
        whole = 4 * (cnt // 4).gather(1, a)                        # members in rows of four
        in_rows = rank < whole
        slot = torch.where(in_rows, a * 4 + rank % 4, 4 * k)        # (group, sum j)
        lanes4 = _cascade_sums(rest, slot, rank // 4, (cnt // 4).repeat_interleave(4, 1), 4 * k)
        lanes4 = lanes4.view(b, k, 4, n - ns)
        tails = rest.new_zeros(b, k * 3 + 1, n - ns).scatter_add_(
            1, torch.where(in_rows, k * 3, a * 3 + rank - whole)[..., None].expand_as(rest),
            rest)[:, :k * 3].view(b, k, 3, n - ns)
        s0 = lanes4[:, :, 0]
        for t in range(3):
            s0 = s0 + tails[:, :, t]
        sums.append(((s0 + lanes4[:, :, 1]) + lanes4[:, :, 2]) + lanes4[:, :, 3])
    total = torch.cat(sums, -1) if len(sums) > 1 else sums[0]
    return total / counts.clamp(min=1)[..., None]


def channel_kmeans_reference(features: Tensor, init: Tensor, max_iter: int,
                             shift_threshold: float, reseed_farthest: bool = False
                             ) -> tuple[Tensor, Tensor, Tensor]:
    """The batched PyTorch k-means (no validation): the oracle and the GPU path.

    features: (B, C, H, W) float32/float64 (computed in its dtype); init: (B, K) int64
    distinct channels. Returns (assignment (B, C), medoids (B, K), iterations (B,)), int64.
    Runs exactly max_iter iterations; a sample's state freezes once it has converged.
    """
    b, c = features.shape[:2]
    k = init.shape[1]
    x = features.reshape(b, c, features.shape[2] * features.shape[3])
    n = x.shape[2]
    dev = x.device
    medoids = init.clone()
    assignment = torch.zeros(b, c, dtype=torch.int64, device=dev)
    iterations = torch.zeros(b, dtype=torch.int64, device=dev)
    done = torch.zeros(b, dtype=torch.bool, device=dev)
    ones = torch.ones(b, c, dtype=x.dtype, device=dev)
    for _ in range(max_iter):
        centres = x.gather(1, medoids[..., None].expand(b, k, n))              # (B, K, N)
        # The paper's pairwise_distance: sum_i (x_i - m_i)^2, difference first (km_sq_term),
        # so that ties (e.g. a two-channel group's members and its mean) round as there.
        d = torch.stack([_sq_dist(x, centres[:, j]) for j in range(k)], -1)    # (B, C, K)
        a = d.argmin(-1)                                                       # first on ties
        mind = d.gather(2, a[..., None])[..., 0]                               # (B, C)
        counts = torch.zeros(b, k, dtype=x.dtype, device=dev).scatter_add_(1, a, ones)
        means = _paper_group_means(x, a, counts, k)                            # (B, K, N)
        keys = torch.stack([_sq_dist(x, means[:, j]) for j in range(k)], 1)    # (B, K, C)
        # An empty group: the paper's NaN mean lands on the first free channel (equal keys),
        # or reseed_farthest: the free channel farthest from its medoid.
        empty_key = -mind[:, None, :] if reseed_farthest else torch.zeros_like(mind)[:, None]
        keys = torch.where(counts[..., None] > 0, keys, empty_key)
        taken = torch.zeros(b, c, dtype=torch.bool, device=dev)
        snapped = []
        for j in range(k):  # K is static: the loop is unrolled, nothing reads data
            p = keys[:, j].masked_fill(taken, math.inf).argmin(-1)
            taken = taken.scatter(1, p[:, None], True)
            snapped.append(p)
        new = torch.stack(snapped, 1)
        moved = x.gather(1, new[..., None].expand(b, k, n)) - centres
        shift = (moved * moved).sum(-1).sqrt().sum(-1)                         # (B,)
        live = ~done
        assignment = torch.where(live[:, None], a, assignment)
        medoids = torch.where(live[:, None], new, medoids)
        iterations = iterations + live.to(torch.int64)
        done = done | (shift * shift < shift_threshold)
    return assignment, medoids, iterations


# ----------------------------------------------------------------------------- python checks


def _validate(features, num_groups, max_iter, shift_threshold, seed) -> None:
    """The checks of csrc/ops/channel_kmeans.py on the Python arguments (same messages), for
    the backends that do not run it, the fake kernel and clearer errors."""
    require_tensor("channel_kmeans", "features", features)
    if features.ndim != 4:
        raise ValueError(f"channel_kmeans: features must be 4-D (B, C, H, W), got shape "
                         f"{tuple(features.shape)}")
    if features.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"channel_kmeans: features must be float32 or float64, got "
                         f"{features.dtype} (cast half/bfloat16 features to float32)")
    c = features.shape[1]
    require_int(num_groups, "num_groups", where="channel_kmeans")
    if num_groups < 1 or num_groups > c:
        raise ValueError(f"channel_kmeans: num_groups must be in [1, C] = [1, {c}] (K "
                         f"distinct channels start the groups), got {num_groups}")
    positive_int(max_iter, "max_iter", where="channel_kmeans")
    non_negative(shift_threshold, "shift_threshold", where="channel_kmeans")
    require_int(seed, "seed", where="channel_kmeans")


def _check_aux(t, name: str, features: Tensor, shape: tuple, dtypes: tuple, what: str) -> None:
    """A user-given index tensor: one of `dtypes`, `shape`, on features' device."""
    require_tensor("channel_kmeans", name, t, what)
    if t.dtype not in dtypes or tuple(t.shape) != shape:
        raise ValueError(f"channel_kmeans: {name} must be {what}, got {tuple(t.shape)} {t.dtype}")
    if t.device != features.device:
        raise ValueError(f"channel_kmeans: {name} is on {t.device} but features are on "
                         f"{features.device}")


def _check_init_shape(init, features: Tensor, num_groups: int) -> None:
    """A user-given init is a (B, K) int64 tensor on features' device."""
    b = features.shape[0]
    _check_aux(init, "init", features, (b, num_groups), (torch.int64,),
               f"a ({b}, {num_groups}) int64 tensor of channel indices")


def _check_init(init, features: Tensor, num_groups: int) -> None:
    """A user-given init: (B, K) int64 distinct channels (one host read to check them)."""
    _check_init_shape(init, features, num_groups)
    c = features.shape[1]
    if init.numel() == 0:
        return
    srt = init.sort(1).values
    bad = (srt[:, 0] < 0) | (srt[:, -1] >= c) | (srt[:, 1:] == srt[:, :-1]).any(1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"channel_kmeans: init[{i}] = {init[i].tolist()} must hold "
                         f"{num_groups} distinct channel indices in [0, {c})")


def _check_index(index, features: Tensor) -> None:
    b = features.shape[0]
    _check_aux(index, "index", features, (b,), (torch.int32, torch.int64),
               f"an integer tensor of shape ({b},)")


# ----------------------------------------------------------------------------- fake kernel


def _fake(features, init, index, base, num_groups, max_iter, shift_threshold,
          reseed_farthest=False):
    # Shapes only (init's values are data: checked by the CPU kernel, or on the host by
    # the Python backends).
    _validate(features, num_groups, max_iter, shift_threshold, 0)
    if init is not None:
        _check_init_shape(init, features, num_groups)
    if index is not None:
        _check_index(index, features)
    if not 0 <= base < 2 ** 32:
        raise ValueError(f"channel_kmeans: base must be a 32-bit counter key in [0, 2**32), "
                         f"got {base} (robustops.ops.counter_rng.stream_base(seed, "
                         "KMEANS_INIT_STREAM))")
    b, c = features.shape[:2]
    return (features.new_empty((b, c), dtype=torch.int64),
            features.new_empty((b, num_groups), dtype=torch.int64),
            features.new_empty((b,), dtype=torch.int64))


_OP, _OP_EAGER = backend.native_op("channel_kmeans", {"channel_kmeans": _fake})


# ----------------------------------------------------------------------------- python backends
# Opaque to torch.compile as ops (the reference's max_iter iterations would otherwise be
# traced and unrolled into one very long graph).


@torch.library.custom_op("robustops::channel_kmeans_triton", mutates_args=())
def _channel_kmeans_triton(features: Tensor, init: Tensor, max_iter: int,
                           shift_threshold: float, reseed_farthest: bool
                           ) -> tuple[Tensor, Tensor, Tensor]:
    """The Triton kernels from given initial medoids (features (B, C, H, W), B, H*W > 0)."""
    from ..triton.channel_kmeans import channel_kmeans_triton
    b, c = features.shape[:2]
    n = features.shape[2] * features.shape[3]
    return channel_kmeans_triton(features.reshape(b, c, n).contiguous(), init.contiguous(),
                                 max_iter, shift_threshold, reseed_farthest)


@torch.library.custom_op("robustops::channel_kmeans_reference", mutates_args=())
def _channel_kmeans_reference_op(features: Tensor, init: Tensor, max_iter: int,
                                 shift_threshold: float, reseed_farthest: bool
                                 ) -> tuple[Tensor, Tensor, Tensor]:
    """channel_kmeans_reference from given initial medoids (fresh outputs: no aliasing)."""
    return channel_kmeans_reference(features, init, max_iter, shift_threshold, reseed_farthest)


def _fake_batched(features, init, max_iter, shift_threshold, reseed_farthest):
    b, c = features.shape[:2]
    return (features.new_empty((b, c), dtype=torch.int64),
            features.new_empty(init.shape, dtype=torch.int64),
            features.new_empty((b,), dtype=torch.int64))


_channel_kmeans_triton.register_fake(_fake_batched)
_channel_kmeans_reference_op.register_fake(_fake_batched)


# ----------------------------------------------------------------------------- public API

# stream_base(seed, KMEANS_INIT_STREAM) of the seeds used so far (a few per run).
_BASES: dict = {}
# ChannelKMeans from the op's tuple without the NamedTuple's Python-level __new__.
_as_result = tuple.__new__


def _base(seed: int) -> int:
    base = _BASES.get(seed)
    if base is None:
        base = _BASES[seed] = stream_base(seed, KMEANS_INIT_STREAM)
    return base


def _python_backend(name: str, features: Tensor, init: Optional[Tensor], index,
                    num_groups: int, max_iter: int, shift_threshold: float,
                    seed: int, reseed_farthest: bool) -> ChannelKMeans:
    """channel_kmeans on the reference or triton backend (checked in Python, same messages)."""
    _validate(features, num_groups, max_iter, shift_threshold, seed)
    features = features.detach()
    if features.device.type == "cpu" and not bool((features * 0).sum() == 0):  # NaN/Inf
        raise ValueError("channel_kmeans: features contain NaN or Inf; k-means needs finite "
                         "feature maps")  # (the C++ op's check; on a GPU: not checked)
    b, c, h, w = features.shape
    if init is not None:
        _check_init(init, features, num_groups)
    else:
        idx = sample_index(b, index, features.device)
        init = _init_from_base(idx, c, num_groups, _base(seed))
    if name == "triton" and b > 0 and h * w > 0:
        out = _channel_kmeans_triton(features, init, max_iter, float(shift_threshold),
                                     reseed_farthest)
    else:
        out = _channel_kmeans_reference_op(features, init, max_iter, float(shift_threshold),
                                           reseed_farthest)
    return ChannelKMeans(*out)


def channel_kmeans(features: Tensor, num_groups: int = 6, *, max_iter: int = 50,
                   shift_threshold: float = 1e-4, seed: int = 0,
                   index: Union[None, int, Tensor] = None,
                   init: Optional[Tensor] = None,
                   reseed_farthest: bool = False) -> ChannelKMeans:
    """Group the C channels of every sample of features (B, C, H, W) into num_groups groups.

    features: float32 or float64 (no gradient; computed in its dtype), any layout.
    num_groups: K in [1, C]. max_iter >= 1, shift_threshold >= 0: the paper's 50 and
    1e-4. seed (any int) and index (None: 0..B-1, an int offset, or (B,) global sample
    indices) key the initial medoids; init (B, K) int64 distinct channels replaces them.
    reseed_farthest: where a group loses every channel (duplicate medoids, e.g. dead
    all-zero channels), False (the paper's code) moves it to the lowest-index channel not
    taken by an earlier group; True to the free channel farthest from its own medoid (the
    usual k-means repair: a different grouping, usually of lower k-means objective).
    Returns ChannelKMeans(assignment (B, C), medoids (B, K), iterations (B,)), int64.
    """
    require_bool(reseed_farthest, "reseed_farthest", where="channel_kmeans")
    if type(num_groups) is not int or type(max_iter) is not int or type(seed) is not int \
            or type(shift_threshold) is not float or index is not None:
        # Python argument forms: checked (and converted) here; the op checks the tensors.
        _validate(features, num_groups, max_iter, shift_threshold, seed)
        shift_threshold = float(shift_threshold)
        if index is not None:
            index = sample_index(features.shape[0], index, features.device)
    try:
        name = backend.python_path(features, OP, BACKENDS)
        if name is None:
            op = _OP if is_compiling() else _OP_EAGER
            out = op(features, init, index, _base(seed), num_groups, max_iter, shift_threshold,
                     reseed_farthest)
            return _as_result(ChannelKMeans, out)
    except (TypeError, AttributeError, RuntimeError):
        _validate(features, num_groups, max_iter, shift_threshold, seed)  # clearer messages
        raise
    return _python_backend(name, features, init, index, num_groups, max_iter, shift_threshold,
                           seed, reseed_farthest)


def check_assignment(op: str, features: Tensor, assignment: Tensor, num_groups) -> None:
    """Clear ValueErrors unless assignment is (B, C) int64 on features' device and
    1 <= num_groups <= C (shared by the ops that take a channel_kmeans assignment)."""
    b, c = features.shape[:2]
    require_tensor(op, "assignment", assignment, f"a ({b}, {c}) int64 tensor")
    if assignment.dtype != torch.int64 or tuple(assignment.shape) != (b, c):
        raise ValueError(f"{op}: assignment must be a ({b}, {c}) int64 tensor (one group label "
                         f"per channel), got {tuple(assignment.shape)} {assignment.dtype}")
    if assignment.device != features.device:
        raise ValueError(f"{op}: assignment is on {assignment.device} but features are on "
                         f"{features.device}")
    require_int(num_groups, "num_groups", where=op)
    if num_groups < 1 or num_groups > c:
        raise ValueError(f"{op}: num_groups must be in [1, C] = [1, {c}], got {num_groups}")
