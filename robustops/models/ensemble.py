"""Ensembles that average softmax outputs, and a fused V1 front-end for VOneNet members.

`Ensemble(members)` returns log(mean_m softmax(member_m(x))): log-probabilities,
so CE, attacks and argmax treat it like any logits model. When every member is a
VOneNet with frozen, geometry-compatible front-ends, their Gabor banks run in one
grouped convolution (`FusedVOneFrontEnd`): the input is read once and filters
that members share (same parameters and input channel, e.g. variants that differ
only in noise) are computed once.
"""
from __future__ import annotations

import math
from typing import List, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn.gabor_conv import GaborConvPlan
from ..nn.vone_block import VOneBlock
from .vonenet import VOneNet

_GEOMETRY = ("in_channels", "ksize", "stride", "padding", "normalize")


class FusedVOneFrontEnd(nn.Module):
    """Several frozen VOneBlocks computed with one grouped convolution.

    blocks: VOneBlocks with equal in_channels, ksize, stride and normalize; each keeps
    its own cells and noise. forward(x, index) -> list of each block's output, equal to
    [block(x, index) for block in blocks] (up to convolution rounding).
    """

    def __init__(self, blocks: Sequence[VOneBlock]):
        super().__init__()
        blocks = list(blocks)
        if not blocks:
            raise ValueError("FusedVOneFrontEnd needs at least one block")
        for b in blocks:
            if not isinstance(b, VOneBlock):
                raise TypeError(f"FusedVOneFrontEnd fuses VOneBlocks, got {type(b).__name__}")
            if b.learnable:
                raise ValueError("FusedVOneFrontEnd needs frozen banks (learnable=False): a "
                                 "learnable bank changes every step")
            for attr in _GEOMETRY:
                if getattr(b, attr) != getattr(blocks[0], attr):
                    raise ValueError(f"blocks differ in {attr} ({getattr(b, attr)} vs "
                                     f"{getattr(blocks[0], attr)}): they cannot share a convolution")
        self.blocks = blocks  # not registered: the members own them
        unique, channels, keys = [], [], {}
        self._ids: List[tuple] = []
        for b in blocks:
            w = b.weight[:, 0][b.plan.slot.to(b.weight.device)]        # (N_b, k, k) in filter order
            ids = []
            for ch, filt in zip(b.plan.filter_channels.tolist(), w):
                key = (ch, filt.detach().cpu().numpy().tobytes())
                if key not in keys:
                    keys[key] = len(unique)
                    unique.append(filt.detach())
                    channels.append(ch)
                ids.append(keys[key])
            ids = torch.tensor(ids, dtype=torch.int64)
            self._ids.append((ids[:b.out_channels], ids[b.out_channels:]))
        self.plan = GaborConvPlan(torch.tensor(channels), blocks[0].in_channels)
        self.register_buffer("weight", self.plan.weight(torch.stack(unique)))
        self.unique_filters = len(unique)
        self.total_filters = sum(b.plan.slot.numel() for b in blocks)

    def forward(self, x: Tensor, index: Union[None, int, Tensor] = None) -> List[Tensor]:
        first = self.blocks[0]
        first._check(x)
        if first.normalize:
            x = (x - 0.5) / 0.5
        y = self.plan.convolve(x, self.weight, first.stride, first.padding)
        return [b.respond(y, self.plan, q0, q1, index) for b, (q0, q1) in zip(self.blocks, self._ids)]


def _mean_softmax_log(logits: Sequence[Tensor]) -> Tensor:
    stacked = torch.stack([F.log_softmax(z.float(), dim=1) for z in logits])
    return (torch.logsumexp(stacked, 0) - math.log(len(logits))).to(logits[0].dtype)


class Ensemble(nn.Module):
    """Softmax-averaging ensemble: x -> (B, K) log of the members' mean probabilities.

    members: models returning (B, K) logits. fuse: run VOneNet members' front-ends in
    one convolution when they are compatible (falls back to separate calls otherwise).
    """

    def __init__(self, members: Sequence[nn.Module], fuse: bool = True):
        super().__init__()
        if len(members) == 0:
            raise ValueError("Ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.front = None
        if fuse and all(isinstance(m, VOneNet) for m in members):
            try:
                self.front = FusedVOneFrontEnd([m.front for m in members])
            except ValueError:
                self.front = None  # incompatible geometry or learnable: separate calls

    @property
    def stochastic(self) -> bool:
        return any(getattr(m, "stochastic", False) for m in self.members)

    def member_logits(self, x: Tensor, index: Union[None, int, Tensor] = None) -> List[Tensor]:
        """Each member's (B, K) logits."""
        if self.front is not None:
            return [m.head(v1) for m, v1 in zip(self.members, self.front(x, index))]
        return [m(x, index) if isinstance(m, VOneNet) else m(x) for m in self.members]

    def forward(self, x: Tensor, index: Union[None, int, Tensor] = None) -> Tensor:
        return _mean_softmax_log(self.member_logits(x, index))
