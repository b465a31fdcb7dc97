"""Square attack (Andriushchenko et al., 2020): black-box random search, L-inf or L2.

Each query changes the current best point inside one random square window (L-inf: a
+-2 eps patch per channel, then projected onto the eps-ball and the box by the fused
pgd_step_; L2: mass moved from a second window into the first, with the paper's
pseudo-Gaussian pattern) and keeps the candidate when the margin loss improves or the
model is fooled. The square side follows the reference's p schedule (p_init = 0.8,
halved at fixed fractions of the query budget).

As a state machine (see attacks/base.py) `state["x"]` is the best point and
`state["logits"]` its logits, so Attack.robust_mask's early exit and batched restarts
apply. Differences from the reference code, which do not change the distribution of one
sample's search: windows and signs are drawn per sample (the reference shares them across
the batch) from counter-based random numbers keyed by (seed, sample index, restart,
query), so a sample's search does not depend on its batch; a window may sit at the last
position (the reference's random_int never draws it).
"""
from __future__ import annotations

import bisect
import functools
import math
from typing import Optional

import torch
from torch import Tensor

from ..arguments import positive_int, unit_fraction
from ..counter_rng import counter_uniform
from ..ops.pgd_step import pgd_step_
from .base import Attack, Eps, State, compact
from .row_keys import RowKeys

# The reference's schedule: p = p_init / 2**j after these query numbers (of 10,000).
P_BOUNDARIES = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def square_p(query: int, n_queries: int, p_init: float = 0.8) -> float:
    """Fraction of pixels the square covers at `query` (schedule rescaled to n_queries)."""
    it = int(query / n_queries * 10000)
    return p_init / 2 ** bisect.bisect_left(P_BOUNDARIES, it)


def margin(logits: Tensor, y: Tensor) -> Tensor:
    """(B,) z_y - max_{j != y} z_j: > 0 while classified correctly."""
    z = logits.float()
    z_y = z.gather(1, y[:, None])[:, 0]
    other = z.scatter(1, y[:, None], float("-inf")).amax(1)
    return z_y - other


@functools.lru_cache(maxsize=64)
def _pseudo_gaussian(s: int) -> Tensor:
    """(s, s) the reference's L2 pattern: two stacked rectangles of concentric 1/r^2 rings,
    opposite signs, unit L2 norm (float64, CPU; cached per size)."""
    def rings(a: int, b: int) -> Tensor:
        d = torch.zeros(a, b, dtype=torch.float64)
        ca, cb = a // 2, b // 2
        for r in range(max(ca, cb) + 1):
            d[max(ca - r, 0):min(ca + r + 1, a), max(cb - r, 0):min(cb + r + 1, b)] += 1.0 / (r + 1) ** 2
        return d / d.norm()

    d = torch.cat([rings(s // 2, s), -rings(s - s // 2, s)]) if s > 1 else torch.ones(1, 1, dtype=torch.float64)
    return d / d.norm()


def _window_index(top: Tensor, left: Tensor, s: int, w: int) -> Tensor:
    """(B, s*s) flat pixel indices of the s x s windows with corners (top, left) (B,)."""
    r = torch.arange(s, device=top.device)
    return ((top[:, None] + r)[:, :, None] * w + (left[:, None] + r)[:, None, :]).reshape(-1, s * s)


def _l2(v: Tensor) -> Tensor:
    """(B, 1, 1, 1) per-sample L2 norms of v (B, C, H, W)."""
    return v.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)


class Square(RowKeys, Attack):
    """Square attack with AutoAttack's defaults (5000 queries, p_init 0.8, margin loss).

    n_queries: queries after the initial one (Attack.steps); p_init: initial fraction of
    pixels per square. Images must be 4-D (B, C, H, W). Each query is one model
    evaluation of a sample still standing; no gradients. See Attack for eps, norm,
    restarts, seed.

    queries_per_pass (L-inf, robust_mask): evaluate each standing sample's next Q queries
    in one pass, all drawn around its current best point, and keep the first that
    improves (the later ones assumed the earlier ones rejected: they are dropped and
    drawn again around the new point). The same search and robust mask as Q = 1, as
    each (sample, query) has its own random draws (the points agree up to rounding, ~6e-8
    measured: Q > 1 writes a window's clamped eps-ball corner, Q = 1 projects x +- 2 eps
    with pgd_step_); for passes whose cost is the call,
    not the rows (a small model, few samples), Q times fewer passes while most queries
    are rejected. AutoAttack picks Q from the model's work per pass.
    """

    def __init__(self, model, *, eps: Eps = 8 / 255, n_queries: int = 5000, p_init: float = 0.8,
                 queries_per_pass: int = 1, **kwargs):
        for bad in ("loss", "random_start", "eot_samples"):
            if bad in kwargs:
                raise ValueError(f"Square takes no {bad} (a margin-loss random search)")
        super().__init__(model, eps=eps, loss="margin", **kwargs)
        self.steps = positive_int(n_queries, "n_queries")
        self.p_init = unit_fraction(p_init, "p_init")
        self.queries_per_pass = positive_int(queries_per_pass, "queries_per_pass")

    # -------------------------------------------------------------- initial point

    def _initial_point(self, x_nat: Tensor, eps, index: Tensor, restart: int) -> Tensor:
        if x_nat.ndim != 4:
            raise ValueError(f"Square attacks images (B, C, H, W), got shape {tuple(x_nat.shape)}")
        b, c, h, w = x_nat.shape
        key = self.rng_key(index, torch.full_like(index, restart))
        e = eps[:, None, None, None] if isinstance(eps, Tensor) else eps
        if self.norm == "linf":
            # Vertical stripes: one sign per channel and column.
            u = counter_uniform(self.seed, 0, key, c * w).reshape(b, c, 1, w)
            start = x_nat + e * torch.where(u < 0.5, -1.0, 1.0).to(x_nat.dtype)
            return start.clamp(self.lo, self.hi)
        s = max(h // 5, 1)
        first = (h - 5 * s) // 2
        nh, nw = (h - first) // s, (w - first) // s
        u = counter_uniform(self.seed, 0, key, c * nh * nw + nh * nw).to(x_nat.device)
        signs = torch.where(u[:, :c * nh * nw] < 0.5, -1.0, 1.0).reshape(b, c, nh, nw, 1, 1)
        flip = (u[:, c * nh * nw:] < 0.5).reshape(b, 1, nh, nw, 1, 1)
        eta = _pseudo_gaussian(s).to(x_nat.device, x_nat.dtype)
        blocks = torch.where(flip, eta.T, eta) * signs.to(x_nat.dtype)    # (B, C, nh, nw, s, s)
        delta = torch.zeros_like(x_nat)
        delta[:, :, first:first + nh * s, first:first + nw * s] = \
            blocks.permute(0, 1, 2, 4, 3, 5).reshape(b, c, nh * s, nw * s)
        return (x_nat + delta / (_l2(delta) + 1e-12) * e).clamp(self.lo, self.hi)

    # -------------------------------------------------------------- state machine

    def _start(self, x0: Tensor, x_nat: Tensor, y: Tensor, target: Optional[Tensor],
               eps: Eps, ids: Optional[Tensor]) -> State:
        if target is not None:
            raise ValueError("Square here is untargeted (AutoAttack's); pass no target")
        index, restart = self._row_keys(x0.shape[0], x0.device)
        logits = self.model(x0).detach()
        m = margin(logits, y)
        return {"x": x0, "x_nat": x_nat, "y": y, "eps": eps, "logits": logits,
                "margin": m, "loss": m.clone(), "key": self.rng_key(index, restart)}

    def _draws(self, key: Tensor, query, c: int) -> Tensor:
        """(N, 5 + C) uniforms of query `query` (int or (N,) int64) for rows keyed `key`
        (N,): window corners, the L2 flip, one sign per channel. Keyed per (sample,
        restart, query), so a query draws the same whichever pass evaluates it."""
        return counter_uniform(self.seed, 1, key * self.steps + query, 5 + c).to(key.device)

    def _side(self, k: int, h: int, w: int, c: int) -> int:
        p = square_p(k, self.steps, self.p_init)
        s = int(round(math.sqrt(p * h * w)))  # p of the C*H*W features, as C x s x s
        if self.norm == "l2":
            s = max(s, 3)
            s += 1 - s % 2  # odd: the pattern's two halves differ by at most one row
        return max(1, min(s, h, w))

    def _step(self, state: State, k: int) -> Tensor:
        x, x_nat = state["x"], state["x_nat"]
        b, c, h, w = x.shape
        s = self._side(k, h, w, c)
        u = self._draws(state["key"], k, c)
        top = (u[:, 0] * (h - s + 1)).floor().clamp_max(h - s).long()
        left = (u[:, 1] * (w - s + 1)).floor().clamp_max(w - s).long()
        signs = torch.where(u[:, 5:] < 0.5, -1.0, 1.0).to(x.dtype)               # (B, C)
        win = _window_index(top, left, s, w)[:, None, :].expand(b, c, s * s)
        if self.norm == "linf":
            e = state["eps"][:, None, None] if isinstance(state["eps"], Tensor) else state["eps"]
            cand = x.clone(memory_format=torch.contiguous_format).reshape(b, c, h * w)
            patch = cand.gather(2, win) + 2 * e * signs[:, :, None]
            cand = cand.scatter(2, win, patch).reshape(b, c, h, w)
            # Fused projection onto the eps-ball and the box (alpha = 0: no gradient step).
            cand = pgd_step_(cand, x_nat, x_nat, state["eps"], 0.0, norm="linf", lo=self.lo,
                             hi=self.hi)
        else:
            top2 = (u[:, 2] * (h - s + 1)).floor().clamp_max(h - s).long()
            left2 = (u[:, 3] * (w - s + 1)).floor().clamp_max(w - s).long()
            cand = self._l2_candidate(x, x_nat, state["eps"], s, win,
                                      _window_index(top2, left2, s, w)[:, None, :].expand(b, c, s * s),
                                      signs, u[:, 4] < 0.5)
        logits = self.model(cand).detach()
        m = margin(logits, state["y"])
        standing = state["margin"] > 0  # fooled samples keep their point, as in the reference
        lower = (m < state["loss"]) & standing
        take = (lower | (m <= 0)) & standing
        old = state["logits"]
        state["loss"] = torch.where(lower, m, state["loss"])
        state["margin"] = torch.where(take, m, state["margin"])
        state["x"] = torch.where(take[:, None, None, None], cand, x)
        state["logits"] = torch.where(take[:, None], logits, old)
        return old

    # -------------------------------------------------------------- Q queries per pass

    def _record_fooled(self, state: State, fooled: Tensor) -> None:
        """Hook, called by the Q-queries-per-pass rounds before they drop the rows that
        `fooled` (N,) bool marks: state["x"] holds the points that fooled them."""

    def _attack_round(self, state: State, b: int, early_exit: bool) -> Tensor:
        """Attack._attack_round, Q = queries_per_pass queries per pass (L-inf); (b,) int32
        per sample: > 0 where fooled. Fooled rows, and rows out of queries, leave the
        batch after each pass (one host read per pass), early_exit or not: the point of
        a fooled sample no longer changes."""
        if self.queries_per_pass == 1 or self.norm != "linf":
            return super()._attack_round(state, b, early_exit)
        owner = state["_owner"]
        hits = torch.zeros(b, dtype=torch.int32, device=owner.device)
        _, c, h, w = state["x"].shape
        sides = [self._side(k, h, w, c) for k in range(self.steps)]
        state["query"] = torch.zeros_like(owner)
        # In a window, a channel goes to the corner of the eps-ball its sign points to,
        # inside the box (what _step's projection of the +-2 eps patch gives).
        e = state["eps"].reshape(-1, 1, 1, 1) if isinstance(state["eps"], Tensor) \
            else state["eps"]
        state["up"] = (state["x_nat"] + e).clamp_(self.lo, self.hi)
        state["down"] = (state["x_nat"] - e).clamp_(self.lo, self.hi)
        side = torch.tensor(sides, device=owner.device)
        fooled = state["logits"].argmax(1) != state["y"]  # the starting point
        passes = 0
        while True:
            hits.index_add_(0, state["_owner"], fooled.int())
            self._record_fooled(state, fooled)
            # _step leaves a point with margin <= 0 as it is (a tie counts as no hit).
            keep = ((state["margin"] > 0) & (state["query"] < self.steps)).nonzero()[:, 0]
            if keep.numel() == 0:
                return hits
            if keep.numel() < fooled.numel():
                state = compact(state, keep)
            # Each pass takes at least one query of every row, and the sides do not grow
            # with the query: no row's next query comes before `passes` (no host read).
            fooled = self._queries_pass(state, side, sides[passes])
            passes += 1

    def _queries_pass(self, state: State, side: Tensor, widest: int) -> Tensor:
        """Each row's next Q queries in one pass; the first improving candidate (if any)
        becomes its point. side: (steps,) the window side of each query; widest: at
        least the side of every query of the pass. Returns (N,) bool: the rows whose new
        point fools the model."""
        x, y = state["x"], state["y"]
        n, c, h, w = x.shape
        q = self.queries_per_pass
        query = state["query"][:, None] + torch.arange(q, device=x.device)         # (N, Q)
        valid = query < self.steps
        query = query.clamp_max(self.steps - 1)
        u = self._draws(state["key"].repeat_interleave(q), query.reshape(-1), c).reshape(n, q, -1)
        s = side[query]
        top = (u[..., 0] * (h - s + 1)).floor().clamp_max(h - s).long()
        left = (u[..., 1] * (w - s + 1)).floor().clamp_max(w - s).long()
        # The windows of _step as flat pixel indices (N, Q, widest**2); a narrower window
        # repeats its last row and column (writing the same values twice).
        off = torch.minimum(torch.arange(widest, device=x.device), s[..., None] - 1)
        win = ((top[..., None] + off)[..., :, None] * w
               + (left[..., None] + off)[..., None, :]).reshape(n, q, 1, -1).expand(-1, -1, c, -1)
        up = (u[..., 5:] >= 0.5)[..., None]                                       # (N, Q, C, 1)
        at = (n, q, c, h * w)
        patch = torch.where(up, state["up"].reshape(n, 1, c, -1).expand(at).gather(3, win),
                            state["down"].reshape(n, 1, c, -1).expand(at).gather(3, win))
        cand = x.reshape(n, 1, c, -1).expand(at).clone(memory_format=torch.contiguous_format)
        cand = cand.scatter_(3, win, patch)
        cand = cand.reshape(n * q, c, h, w)
        logits = self.model(cand).detach()
        m = margin(logits, y.repeat_interleave(q)).reshape(n, q)
        better = (m < state["loss"][:, None]) & valid
        took = better.any(1)
        first = better.int().argmax(1)              # the first improving query (0 if none)
        row = torch.arange(n, device=x.device)
        used = torch.where(took, first + 1, valid.sum(1))
        new_logits = logits.reshape(n, q, -1)[row, first]
        state["x"] = torch.where(took[:, None, None, None],
                                 cand.reshape(n, q, c, h, w)[row, first], x)
        state["logits"] = torch.where(took[:, None], new_logits, state["logits"])
        state["loss"] = torch.where(took, m[row, first], state["loss"])
        state["margin"] = torch.where(took, m[row, first], state["margin"])
        state["query"] = state["query"] + used
        return took & (new_logits.argmax(1) != y)

    def _l2_candidate(self, x: Tensor, x_nat: Tensor, eps, s: int, win: Tensor, win2: Tensor,
                      signs: Tensor, flip: Tensor) -> Tensor:
        """Move the perturbation's mass of window 2 and window 1 into window 1 with a fresh
        pseudo-Gaussian pattern, keeping the total L2 norm at eps (the reference's update)."""
        b, c, h, w = x.shape
        e = eps[:, None, None, None] if isinstance(eps, Tensor) else eps
        delta = (x - x_nat).contiguous().reshape(b, c, h * w)
        old = delta.gather(2, win)                                             # (B, C, s*s)
        norm_old = old.norm(dim=2, keepdim=True)
        both = torch.zeros(b, 1, h * w, device=x.device, dtype=x.dtype)
        both.scatter_(2, win[:, :1], 1.0).scatter_(2, win2[:, :1], 1.0)
        norm_windows = (delta * both).flatten(1).norm(dim=1).reshape(b, 1, 1)
        norm_image = delta.flatten(1).norm(dim=1).reshape(b, 1, 1)
        eta = _pseudo_gaussian(s).to(x.device, x.dtype)
        pattern = torch.where(flip[:, None, None], eta.T, eta).reshape(b, 1, s * s)
        new = pattern * signs[:, :, None] + old / (1e-12 + norm_old)
        budget = ((e ** 2 if not isinstance(eps, Tensor) else e.reshape(b, 1, 1) ** 2)
                  - norm_image ** 2).clamp_min(0) / c + norm_windows ** 2
        new = new / (1e-12 + new.norm(dim=2, keepdim=True)) * budget.sqrt()
        delta = delta.scatter(2, win2, 0.0).scatter(2, win, new).reshape(b, c, h, w)
        return (x_nat + delta / (_l2(delta) + 1e-12) * e).clamp(self.lo, self.hi)
