"""The registry of training objectives by name: one entry per objective.

Config validation ([objective] name and the defaults it implies), the CLI's
`--objective` choices, `recipes.objective` and ``robustops.train.OBJECTIVES`` all read
OBJECTIVE_ENTRIES; an objective added here (``register_objective``) is known to all of
them. The name is the class's own ``name`` attribute.

    entry = OBJECTIVE_ENTRIES["part_trades"]
    objective = entry.build({"eps": 8 / 255, "steps": 10, "alpha": None, "beta": 6.0,
                             "seg_weight": 0.5, ...}, seed=0)

An entry builds its objective from the [objective] section's values (eps, steps, alpha,
beta, replays, layer, seg_weight; unset: None) and the run's seed.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple, Type

from ..registry_table import add_entry
from .objectives import (CACRWACR, MAT, PGDAT, TRADES, CrossEntropy, FastAT, FreeAT, IGNorm,
                         IGSumNorm, Objective, PartMAT, PartSemiSupervised, PartTRADES,
                         TenetFreeAT, TenetObjective)

__all__ = ["ObjectiveEntry", "OBJECTIVE_ENTRIES", "OBJECTIVES", "register_objective",
           "objective_names", "part_objective_names"]

Settings = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class ObjectiveEntry:
    """One training objective: what `--help`, config validation and the builder need.

    cls: its Objective class (the name is cls.name); build(settings, seed) -> an
    instance; beta: the default of [objective] beta (None: beta is not read), beta_max:
    its upper bound (None: none); needs_layer: it reads [objective] layer (TENET);
    needs_parts: it trains a part model on part masks (packed targets).
    """

    cls: Type[Objective]
    summary: str
    build: Callable[[Settings, int], Objective]
    beta: Optional[float] = None
    beta_max: Optional[float] = None
    needs_layer: bool = False
    needs_parts: bool = False

    @property
    def name(self) -> str:
        return self.cls.name


OBJECTIVE_ENTRIES: Dict[str, ObjectiveEntry] = {}


def register_objective(entry: ObjectiveEntry) -> ObjectiveEntry:
    """Add `entry` to OBJECTIVE_ENTRIES (and robustops.train.OBJECTIVES); a name is taken once."""
    return add_entry(OBJECTIVE_ENTRIES, entry, ObjectiveEntry, "objective",
                     "register_objective")


def objective_names() -> Tuple[str, ...]:
    """Every registered objective name, in registration order."""
    return tuple(OBJECTIVE_ENTRIES)


def part_objective_names() -> Tuple[str, ...]:
    """The objectives that train on part masks."""
    return tuple(n for n, e in OBJECTIVE_ENTRIES.items() if e.needs_parts)


class _ObjectiveClasses(Mapping):
    """{name: Objective class}, read live from OBJECTIVE_ENTRIES (so a later
    register_objective shows here too): robustops.train.OBJECTIVES."""

    def __getitem__(self, name: str) -> Type[Objective]:
        return OBJECTIVE_ENTRIES[name].cls

    def __iter__(self) -> Iterator[str]:
        return iter(OBJECTIVE_ENTRIES)

    def __len__(self) -> int:
        return len(OBJECTIVE_ENTRIES)

    def __repr__(self) -> str:
        return f"OBJECTIVES({', '.join(OBJECTIVE_ENTRIES)})"


OBJECTIVES: Mapping[str, Type[Objective]] = _ObjectiveClasses()


# ----------------------------------------------------------------------------- rules


def _alpha(s: Settings, factor: float):
    """[objective] alpha, or factor * eps / steps (the objective's rule) when unset."""
    return s["alpha"] if s.get("alpha") is not None else factor * s["eps"] / s["steps"]


def _beta(s: Settings, default: float) -> float:
    return default if s.get("beta") is None else s["beta"]


def _seg_weight(s: Settings) -> dict:
    return {} if s.get("seg_weight") is None else {"seg_weight": s["seg_weight"]}


def _attack(s: Settings, seed: int, factor: float = 2.5) -> dict:
    """eps, alpha (factor * eps / steps unless set), steps and seed of a PGD inner loop."""
    return {"eps": s["eps"], "alpha": _alpha(s, factor), "steps": s["steps"], "seed": seed}


register_objective(ObjectiveEntry(
    CrossEntropy, "clean cross-entropy", lambda s, seed: CrossEntropy()))
register_objective(ObjectiveEntry(
    PGDAT, "PGD adversarial training (eps, steps, alpha)",
    lambda s, seed: PGDAT(eps=s["eps"], alpha=s.get("alpha"), steps=s["steps"], seed=seed)))
register_objective(ObjectiveEntry(
    TRADES, "TRADES: CE + beta KL(clean || adversarial)",
    lambda s, seed: TRADES(beta=_beta(s, 6.0), **_attack(s, seed)), beta=6.0))
register_objective(ObjectiveEntry(
    MAT, "MAT: (1 - beta) CE(x) + beta CE(x_adv)",
    lambda s, seed: MAT(beta=_beta(s, 0.5), eps=s["eps"], alpha=s.get("alpha"),
                        steps=s["steps"], seed=seed), beta=0.5, beta_max=1.0))
register_objective(ObjectiveEntry(
    FastAT, "fast AT: one FGSM step from a random start",
    lambda s, seed: FastAT(eps=s["eps"], alpha=s.get("alpha"), seed=seed)))
register_objective(ObjectiveEntry(
    FreeAT, "free AT: each batch replayed `replays` times",
    lambda s, seed: FreeAT(eps=s["eps"], replays=s["replays"])))
register_objective(ObjectiveEntry(
    IGNorm, "IG-NORM: CE + beta (its lambda) ||IG||_1 at the norm's maximiser",
    lambda s, seed: IGNorm(lam=_beta(s, 1.0), **_attack(s, seed)), beta=1.0))
register_objective(ObjectiveEntry(
    IGSumNorm, "IG-SUM-NORM: PGD on CE + beta ||IG||_1",
    lambda s, seed: IGSumNorm(beta=_beta(s, 1.0), **_attack(s, seed)), beta=1.0))
register_objective(ObjectiveEntry(
    CACRWACR, "CE at IG-SUM-NORM's maximiser (beta) + the CACR and WACR regularisers",
    lambda s, seed: CACRWACR(beta=_beta(s, 1.0), **_attack(s, seed)), beta=1.0))
register_objective(ObjectiveEntry(
    TenetObjective, "TENET group-wise inhibition of [objective] layer (CE base)",
    lambda s, seed: TenetObjective(s["layer"], seed=seed), needs_layer=True))
register_objective(ObjectiveEntry(
    TenetFreeAT, "TENET on free AT",
    lambda s, seed: TenetFreeAT(s["layer"], eps=s["eps"], replays=s["replays"], seed=seed),
    needs_layer=True))
register_objective(ObjectiveEntry(
    PartSemiSupervised, "part model, semi-supervised: (1 - c) CE + c Seg on part masks",
    lambda s, seed: PartSemiSupervised(**_seg_weight(s)), needs_parts=True))
register_objective(ObjectiveEntry(
    PartTRADES, "part-model TRADES: (1 - c) CE + c Seg(x_adv) + beta KL",
    lambda s, seed: PartTRADES(beta=_beta(s, 6.0), **_seg_weight(s), **_attack(s, seed, 1.25)),
    beta=6.0, needs_parts=True))
register_objective(ObjectiveEntry(
    PartMAT, "part-model MAT: (1 - c) [(1 - beta) CE + beta CE(x_adv)] + c Seg(x_adv)",
    lambda s, seed: PartMAT(beta=_beta(s, 0.5), **_seg_weight(s), **_attack(s, seed, 1.25)),
    beta=0.5, beta_max=1.0, needs_parts=True))
