"""Training objectives, pluggable into the Trainer (subclass Objective for your own)."""
from .base import Objective
from .ce import CrossEntropy
from .distillation import Distillation
from .fast_at import FastAT
from .free_at import FreeAT
from .mat import MAT
from .pgd_at import PGDAT
from .trades import TRADES

OBJECTIVES = {c.name: c for c in (CrossEntropy, PGDAT, TRADES, MAT, FastAT, FreeAT)}

__all__ = ["Objective", "CrossEntropy", "PGDAT", "TRADES", "MAT", "FastAT", "FreeAT", "Distillation", "OBJECTIVES"]
