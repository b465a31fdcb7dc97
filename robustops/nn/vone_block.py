"""VOneBlock: a V1 front-end (fixed Gabor bank, simple/complex cells, neuronal noise).

A drop-in replacement for VOneNet's block with the same constructor knobs. The
bank is computed with the structure exploited (robustops/nn/gabor_conv.py: one
grouped convolution, quadrature filters only for complex channels) and the
epilogue is the fused `v1_response` op (one pass, counter-based noise keyed by
the global sample index). `dense_forward` is VOneNet's own formulation (two
dense convolutions, eager epilogue) with the same parameters: the oracle of the
tests and the baseline of the benchmarks.

Colour channels, as the original (dicarlolab/vonenet, vonenet/modules.py): each
filter reads one input channel drawn uniformly at random; the q0 bank draws its
channels (one per output channel) and then the quadrature q1 bank draws its own,
independently (``GFB.initialize`` runs once per bank), so a complex cell's two
filters usually read different colour channels. The original draws from torch's
global generator (its training script seeds it with --torch_seed, default 0, right
before building the model); here a private ``torch.Generator`` seeded with
gabor_seed makes the same two ``torch.randint(0, in_channels, (C,))`` calls in the
same order, so a block reproduces the original built after
``torch.manual_seed(gabor_seed)`` (both 0 by default). ``quadrature_channels="tied"``
is an explicit alternative, not VOneNet's: q1 reads q0's channel (a complex cell
then measures the energy of one colour channel).
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..arguments import require_bool, require_int, require_real
from ..counter_rng import sample_index
from ..ops.gabor_bank import gabor_bank
from ..ops.v1_response import v1_noise_normals, v1_response
from .gabor_conv import GaborConvPlan, dense_gabor_weight
from .gabor_parameters import gabor_filter_parameters, sample_gabor_parameters

NOISE_MODES = ("off", "fixed", "fresh")
QUADRATURE_CHANNELS = ("independent", "tied")
_PARAMS = ("frequency", "sigma_x", "sigma_y", "theta", "phase")


def _real(value, name: str) -> float:
    """float(value) for a finite real number (bools and strings refused), naming the knob."""
    return require_real(value, name, where="VOneBlock", what="a finite real number")


def _int(value, name: str) -> int:
    return require_int(value, name, where="VOneBlock")


def draw_filter_channels(gabor_seed: int, out_channels: int, in_channels: int):
    """(q0 channels, q1 channels), each (out_channels,) int64: VOneNet's two draws
    ``torch.randint(0, in_channels, (out_channels,))`` (q0's bank, then q1's), from a
    private generator seeded with gabor_seed (the global one is untouched)."""
    g = torch.Generator().manual_seed(gabor_seed)
    q0 = torch.randint(0, in_channels, (out_channels,), generator=g)
    q1 = torch.randint(0, in_channels, (out_channels,), generator=g)
    return q0, q1


class VOneBlock(nn.Module):
    """V1 front-end. x: (B, in_channels, H, W) in [0, 1] -> (B, simple + complex, H/stride, W/stride).

    Knobs as VOneNet: sf_corr, sf_min, sf_max (cycles/deg; the default 6 is VOneNet's
    training script's, its VOneNet() builder defaults to 9, and the bins end at 8
    either way), rand_param, gabor_seed, simple_channels, complex_channels, noise_scale,
    noise_level, k_exc, ksize, stride, image_size, visual_degrees. noise_mode: 'fresh' (VOneNet's neuronal noise, new draws
    every call: the block is stochastic), 'fixed' (noise keyed by noise_seed and the
    global sample index: reproducible, the same sample gets the same noise whatever
    the batch split) or 'off'. learnable: the Gabor parameters become nn.Parameters and
    the bank is regenerated (differentiably) every call; frozen by default, as VOneNet.
    normalize: map [0, 1] inputs to [-1, 1] (VOneNet's mean = std = 0.5) first.
    quadrature_channels: 'independent' (VOneNet's: the q1 bank draws its own input
    channels, see the module docstring) or 'tied' (q1 reads q0's channel; not VOneNet).
    The wiring is kept in the buffers channel_of_filter (q0) and
    channel_of_quadrature_filter (q1, all channels as VOneNet draws them; the complex
    ones are used); load_state_dict takes the loaded wiring (state dicts saved before
    the quadrature draw existed are tied ones).
    """

    _version = 2  # 2: channel_of_quadrature_filter (1: q1 tied to channel_of_filter)

    def __init__(self, *, sf_corr: float = 0.75, sf_max: float = 6.0, sf_min: float = 0.0,
                 rand_param: bool = False, gabor_seed: int = 0, simple_channels: int = 256,
                 complex_channels: int = 256, noise_mode: str = "fresh", noise_scale: float = 0.35,
                 noise_level: float = 0.07, noise_seed: int = 0, k_exc: float = 25.0,
                 ksize: int = 25, stride: int = 4, image_size: int = 224,
                 visual_degrees: float = 8.0, in_channels: int = 3, learnable: bool = False,
                 normalize: bool = True, quadrature_channels: str = "independent"):
        super().__init__()
        for name, v, lo in (("simple_channels", simple_channels, 0),
                            ("complex_channels", complex_channels, 0), ("ksize", ksize, 1),
                            ("stride", stride, 1), ("in_channels", in_channels, 1),
                            ("image_size", image_size, 1)):
            require_int(v, name, where="VOneBlock", minimum=lo)
        if simple_channels + complex_channels == 0:
            raise ValueError("VOneBlock: simple_channels + complex_channels must be > 0")
        if ksize % 2 == 0:
            raise ValueError(f"VOneBlock: ksize must be odd (a centred filter), got {ksize}")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"VOneBlock: noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if quadrature_channels not in QUADRATURE_CHANNELS:
            raise ValueError(f"VOneBlock: quadrature_channels must be one of "
                             f"{QUADRATURE_CHANNELS}, got {quadrature_channels!r}")
        noise_scale = _real(noise_scale, "noise_scale")
        if noise_scale <= 0:
            raise ValueError(f"VOneBlock: noise_scale must be finite and > 0, got {noise_scale}")
        noise_level, k_exc = _real(noise_level, "noise_level"), _real(k_exc, "k_exc")
        visual_degrees = _real(visual_degrees, "visual_degrees")
        noise_seed = _int(noise_seed, "noise_seed")
        # The Gabor draw seeds numpy (sample_gabor_parameters): its range, under this name.
        gabor_seed = require_int(gabor_seed, "gabor_seed", where="VOneBlock", minimum=0,
                                 maximum=2 ** 32 - 1, what="an int in [0, 2**32)")
        self.simple_channels, self.complex_channels = simple_channels, complex_channels
        self.out_channels = simple_channels + complex_channels
        self.in_channels, self.ksize, self.stride = in_channels, ksize, stride
        self.padding = ksize // 2
        self.noise_mode, self.noise_seed = noise_mode, noise_seed
        self.noise_scale, self.noise_level, self.k_exc = noise_scale, noise_level, k_exc
        self.image_size, self.visual_degrees = image_size, visual_degrees
        self.gabor_seed, self.learnable, self.normalize = (
            gabor_seed, require_bool(learnable, "learnable", where="VOneBlock"),
            require_bool(normalize, "normalize", where="VOneBlock"))
        self.quadrature_channels = quadrature_channels
        self.config = dict(sf_corr=sf_corr, sf_max=sf_max, sf_min=sf_min, rand_param=rand_param,
                           gabor_seed=gabor_seed, simple_channels=simple_channels,
                           complex_channels=complex_channels, noise_mode=noise_mode,
                           noise_scale=noise_scale, noise_level=noise_level, noise_seed=noise_seed,
                           k_exc=k_exc, ksize=ksize, stride=stride, image_size=image_size,
                           visual_degrees=visual_degrees, in_channels=in_channels,
                           learnable=learnable, normalize=normalize,
                           quadrature_channels=quadrature_channels)

        bio = sample_gabor_parameters(self.out_channels, seed=self.gabor_seed, rand_param=rand_param,
                                      sf_corr=sf_corr, sf_min=sf_min, sf_max=sf_max)
        self.biological = {k: v.float() for k, v in bio.items()}
        filt = gabor_filter_parameters(bio, image_size=image_size, visual_degrees=visual_degrees)
        for name in _PARAMS:
            t = filt[name].float()
            if self.learnable:
                setattr(self, name, nn.Parameter(t))
            else:
                self.register_buffer(name, t)
        # Each filter reads one input channel: VOneNet's two draws (q0's bank, q1's bank).
        q0_chn, q1_chn = draw_filter_channels(self.gabor_seed, self.out_channels, in_channels)
        self.register_buffer("channel_of_filter", q0_chn)
        self.register_buffer("channel_of_quadrature_filter",
                             q0_chn.clone() if quadrature_channels == "tied" else q1_chn)
        c = self.out_channels
        self._q0_filters = torch.arange(c)
        self._q1_filters = torch.arange(c, c + complex_channels)
        self.plan = self._make_plan(self.channel_of_filter, self.channel_of_quadrature_filter)
        if not self.learnable:
            with torch.no_grad():
                self.register_buffer("weight", self.plan.weight(torch.cat(self.filters())))

    def _make_plan(self, q0_channels: Tensor, q1_channels: Tensor) -> GaborConvPlan:
        """The grouped convolution of the filters: q0 of every channel, then q1 of the
        complex channels, each reading its own input channel."""
        return GaborConvPlan(torch.cat([q0_channels.cpu(),
                                        q1_channels.cpu()[self.simple_channels:]]),
                             self.in_channels)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # The wiring comes with the state dict: rebuild the plan (and the weight's shape)
        # for it before the tensors are copied. State dicts of version 1 have no
        # channel_of_quadrature_filter: their q1 filters read q0's channels.
        k0, k1 = prefix + "channel_of_filter", prefix + "channel_of_quadrature_filter"
        version = (local_metadata or {}).get("version")
        if k0 in state_dict and k1 not in state_dict and (version is None or version < 2):
            state_dict[k1] = state_dict[k0].clone()
        q0, q1 = state_dict.get(k0), state_dict.get(k1)
        if (isinstance(q0, Tensor) and isinstance(q1, Tensor)
                and q0.shape == self.channel_of_filter.shape
                and q1.shape == self.channel_of_quadrature_filter.shape
                and not (torch.equal(q0.cpu(), self.channel_of_filter.cpu())
                         and torch.equal(q1.cpu(), self.channel_of_quadrature_filter.cpu()))):
            try:
                plan = self._make_plan(q0, q1)
            except ValueError as exc:  # channels out of range
                error_msgs.append(f"VOneBlock {prefix!r}: {exc}")
            else:
                self.plan = plan
                if not self.learnable:
                    w = self.weight
                    self.weight = w.new_empty((plan.in_channels * plan.group,) + tuple(w.shape[1:]))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    @property
    def stochastic(self) -> bool:
        """True when two calls on the same input differ (attacks then average with EOT)."""
        return self.noise_mode == "fresh"

    def filters(self):
        """(C, k, k) q0 filters and (Cc, k, k) quadrature (phase + 90 deg) filters."""
        p = [getattr(self, n) for n in _PARAMS]
        w0 = gabor_bank(*p, self.ksize)
        s = self.simple_channels
        cp = [t[s:] for t in p]
        w1 = gabor_bank(*cp[:4], cp[4] + math.pi / 2, self.ksize)
        return w0, w1

    def _noise_seed(self) -> int:
        if self.noise_mode == "fresh":
            # Fresh draws from torch's generator: seeded runs stay reproducible.
            return int(torch.randint(0, 2**62, (1,)))
        return self.noise_seed

    def _check(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim != 4:
            raise TypeError("VOneBlock: x must be a floating (B, C, H, W) tensor of images in [0, 1]")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"VOneBlock: x has {x.shape[1]} channels, the block was built for "
                             f"{self.in_channels} (in_channels=...)")

    def forward(self, x: Tensor, index: Union[None, int, Tensor] = None) -> Tensor:
        """index: global sample indices keying the noise (None: 0..B-1, or an int offset)."""
        self._check(x)
        if self.normalize:
            x = (x - 0.5) / 0.5
        weight = self.plan.weight(torch.cat(self.filters())) if self.learnable else self.weight
        y = self.plan.convolve(x, weight, self.stride, self.padding)
        return self.respond(y, self.plan, self._q0_filters, self._q1_filters, index)

    def respond(self, y: Tensor, plan: GaborConvPlan, q0_filters: Tensor, q1_filters: Tensor,
                index: Union[None, int, Tensor] = None) -> Tensor:
        """The cells' response from y = plan.convolve(...), whose filters q0_filters /
        q1_filters (indices into plan's filters) are this block's q0 / q1 filters (a
        fused ensemble front-end shares one plan among several blocks)."""
        q0 = y.index_select(1, plan.slots(q0_filters, y.device))
        q1 = y.index_select(1, plan.slots(q1_filters, y.device))
        noise = self.noise_mode != "off"
        return v1_response(q0, q1, k_exc=self.k_exc, noise_scale=self.noise_scale,
                           noise_level=self.noise_level, noise=noise,
                           seed=self._noise_seed() if noise else 0,
                           index=index if noise else None)

    def extra_repr(self) -> str:
        return (f"simple={self.simple_channels}, complex={self.complex_channels}, "
                f"ksize={self.ksize}, stride={self.stride}, noise_mode={self.noise_mode!r}, "
                f"gabor_seed={self.gabor_seed}, learnable={self.learnable}")


def dense_weights(block: VOneBlock):
    """VOneNet's two dense (C, in_channels, k, k) weights of `block`: q0 and q1 of every
    channel (zero except at each filter's input channel: channel_of_filter for q0,
    channel_of_quadrature_filter for q1)."""
    with torch.no_grad():
        p = [getattr(block, n) for n in _PARAMS]
        w0 = gabor_bank(*p, block.ksize)
        w1 = gabor_bank(*p[:4], p[4] + math.pi / 2, block.ksize)  # VOneNet computes q1 for all
        return (dense_gabor_weight(w0, block.channel_of_filter, block.in_channels),
                dense_gabor_weight(w1, block.channel_of_quadrature_filter, block.in_channels))


def dense_forward(block: VOneBlock, x: Tensor, index: Union[None, int, Tensor] = None,
                  seed: Optional[int] = None, weights=None, normal=None) -> Tensor:
    """VOneNet's formulation of `block`: two dense convolutions for q0 and q1 of every
    channel, then the eager epilogue (as VOneNet's gabors_f and noise_f).

    The noise is the block's (counter-based, keyed by seed, default the block's
    noise_seed, and index) unless normal(out) supplies it (VOneNet draws torch.randn).
    weights: dense_weights(block), precomputed (as VOneNet's frozen convolutions are).
    """
    if block.normalize:
        x = (x - 0.5) / 0.5
    w0, w1 = dense_weights(block) if weights is None else weights
    s = block.simple_channels
    q0 = F.conv2d(x, w0, stride=block.stride, padding=block.padding)
    q1 = F.conv2d(x, w1, stride=block.stride, padding=block.padding)
    c = torch.sqrt(q0[:, s:] ** 2 + q1[:, s:] ** 2) / math.sqrt(2)
    out = block.k_exc * torch.cat((F.relu(q0[:, :s]), c), 1)
    if block.noise_mode != "off":
        if normal is None:
            idx = sample_index(x.shape[0], index, x.device)
            n = v1_noise_normals(out.shape, block.noise_seed if seed is None else seed, idx,
                                 out.dtype)
        else:
            n = normal(out)
        out = out * block.noise_scale + block.noise_level
        out = out + n * torch.sqrt(F.relu(out.clone()) + 1e-4)
        out = (out - block.noise_level) / block.noise_scale
    return F.relu(out)
