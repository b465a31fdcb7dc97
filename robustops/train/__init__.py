"""Training: the Trainer and pluggable objectives (CE, PGD-AT, TRADES, MAT, fast AT, free AT)."""
from .checkpoint import load_checkpoint, save_atomic
from .objectives import (MAT, OBJECTIVES, PGDAT, TRADES, CrossEntropy, Distillation, FastAT, FreeAT,
                         Objective)
from .trainer import Trainer

__all__ = ["Trainer", "Objective", "CrossEntropy", "PGDAT", "TRADES", "MAT", "FastAT", "FreeAT", "Distillation",
           "OBJECTIVES", "save_atomic", "load_checkpoint"]
