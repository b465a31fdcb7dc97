"""counter_rng: counter-based uniform and normal numbers, keyed per sample.

Each value is a pure function of (seed, stream, global sample index, element),
so a sample gets the same numbers whatever the batch split, the number of
processes or the backend. The hash is kernels/counter_rng.h; the plain-PyTorch
reference below is bit-identical for uniforms (normals agree to the last bits
of float64 log/cos). No autograd: these are random numbers.

Layers: the op ``robustops::counter_rng`` is declared in C++ (csrc/ops/counter_rng.cpp,
with its argument checks; its Autograd key falls through) and runs kernels registered
per dispatch key (csrc/cpu/counter_rng.cpp, csrc/cuda/counter_rng.cu). This file holds
the public function (one call of the op), the fake kernel, the plain-PyTorch reference
(the oracle and the fallback without the extension) and the Triton backend
(robustops/triton/counter_rng.py) as ``robustops::counter_rng_triton``.
"""
from __future__ import annotations


import torch
from torch.compiler import is_compiling
from torch import Tensor

from ..arguments import require_int, require_tensor
from .. import backend

OP = "counter_rng"
BACKENDS = ("reference", "cpp", "cuda", "triton")
MASK = 0xFFFFFFFF
GOLDEN = 0x9E3779B9
ROW_SALT = 0x68E31DA4
COL_SALT = 0x1B873593


def fmix32_int(h: int) -> int:
    """MurmurHash3's finaliser on a Python int (host-side key set-up)."""
    h &= MASK
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & MASK
    return h ^ (h >> 16)


def stream_base(seed: int, stream: int) -> int:
    """The 32-bit key of (seed, stream): fmix32(fold32(seed) ^ (stream + 1) * GOLDEN).

    seed, stream: ints (any size; the seed is read modulo 2**64); anything else is a
    TypeError naming the argument."""
    if type(seed) is not int or type(stream) is not int:
        seed, stream = require_int(seed, "seed"), require_int(stream, "stream")
    s = seed & ((1 << 64) - 1)
    return fmix32_int((s ^ (s >> 32)) & MASK ^ (((stream + 1) * GOLDEN) & MASK))


# ----------------------------------------------------------------------------- reference


def mul32(h: Tensor, c: int) -> Tensor:
    # (h * c) mod 2**32 from 16-bit halves so no int64 product overflows.
    lo = (h & 0xFFFF) * c
    hi = ((h >> 16) * c) & 0xFFFF
    return (lo + (hi << 16)) & MASK


def fmix32(h: Tensor) -> Tensor:
    """MurmurHash3 finaliser on int64 tensors holding uint32 values."""
    h = h ^ (h >> 16)
    h = mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = mul32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def _reference_uniform64(index: Tensor, numel: int, base: int) -> Tensor:
    lo, hi = index & MASK, (index >> 32) & MASK
    row = fmix32(fmix32(base ^ fmix32(hi ^ ROW_SALT)) ^ lo)                  # (B,)
    col = torch.arange(numel, device=index.device, dtype=torch.int64)
    col = fmix32(mul32(col & MASK, GOLDEN) ^ COL_SALT)                      # (N,)
    h = fmix32(fmix32(row[:, None] ^ col[None, :]) ^ (row[:, None] >> 7))
    return ((h >> 9).to(torch.float64) + 0.5) * (2.0 ** -23)


def counter_rng_reference(index: Tensor, numel: int, base1: int, base2: int, normal: bool,
                          dtype: torch.dtype) -> Tensor:
    """(B, numel) uniforms in (0, 1), or normals (Box-Muller on bases 1 and 2), in plain PyTorch."""
    u1 = _reference_uniform64(index, numel, base1)
    if not normal:
        return u1.to(dtype)
    u2 = _reference_uniform64(index, numel, base2)
    return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(6.283185307179586 * u2)).to(dtype)


# ----------------------------------------------------------------------------- checks


def _validate(index, numel, dtype) -> None:
    """The checks of csrc/ops/counter_rng.cpp (same messages), for the backends that do
    not run it (reference, triton), the fake kernel, and clearer errors for arguments
    the op's schema rejects."""
    require_tensor("counter_rng", "index", index, "a (B,) int64 tensor of global sample indices")
    if index.dtype != torch.int64 or index.ndim != 1:
        raise ValueError("index must be a (B,) int64 tensor of global sample indices")
    require_int(numel, "numel", minimum=0)
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")


# ----------------------------------------------------------------------------- fake kernels


def _fake(index, numel, base1, base2, normal, dtype):
    _validate(index, numel, dtype)
    return index.new_empty((index.shape[0], numel), dtype=dtype)


_OP, _OP_EAGER = backend.native_op("counter_rng", {"counter_rng": _fake})


# ----------------------------------------------------------------------------- triton backend


@torch.library.custom_op("robustops::counter_rng_triton", mutates_args=())
def _counter_rng_triton(index: Tensor, numel: int, base1: int, base2: int, normal: bool,
                        dtype: torch.dtype) -> Tensor:
    from ..triton.counter_rng import counter_rng_triton
    _validate(index, numel, dtype)
    out = torch.empty(index.shape[0], numel, dtype=dtype, device=index.device)
    counter_rng_triton(out, index.contiguous(), base1, base2, normal)
    return out


_counter_rng_triton.register_fake(_fake)


# ----------------------------------------------------------------------------- public API


_BASES: dict = {}  # (seed, stream, normal) -> the two keys: loops repeat their draws


def _bases(seed: int, stream: int, normal: bool) -> tuple[int, int]:
    """The two 32-bit keys of a draw."""
    key = (seed, stream, normal)
    bases = _BASES.get(key)
    if bases is None:
        if normal:
            bases = stream_base(seed, 2 * stream), stream_base(seed, 2 * stream + 1)
        else:
            bases = (stream_base(seed, stream),) * 2
        if len(_BASES) < 4096:
            _BASES[key] = bases
    return bases


def counter_rng(index: Tensor, numel: int, seed: int, stream: int, *, normal: bool = False,
                dtype: torch.dtype = torch.float32) -> Tensor:
    """(B, numel) random numbers for global sample indices `index` (B,) int64.

    Uniforms in the open interval (0, 1), or standard normals (normal=True, drawn
    from streams 2*stream and 2*stream + 1). seed, stream: ints (TypeError otherwise);
    dtype: float32 or float64.
    """
    if type(numel) is not int or type(seed) is not int or type(stream) is not int:
        # The schema's int takes a bool; seed and stream are keys of a cache (1.0 == 1).
        _validate(index, numel, dtype)
        seed, stream = require_int(seed, "seed"), require_int(stream, "stream")
    base1, base2 = _bases(seed, stream, normal)
    try:
        name = backend.python_path(index, OP, BACKENDS)
        if name is None:
            return (_OP if is_compiling() else _OP_EAGER)(index, numel, base1, base2, normal, dtype)
    except (TypeError, AttributeError, RuntimeError):
        _validate(index, numel, dtype)  # a clearer message than the schema's
        raise
    if name == "triton":
        return _counter_rng_triton(index, numel, base1, base2, normal, dtype)
    _validate(index, numel, dtype)
    return counter_rng_reference(index, numel, base1, base2, normal, dtype)
