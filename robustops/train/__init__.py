"""Training: the Trainer and pluggable objectives (CE, PGD-AT, TRADES, MAT, fast AT, free AT,
attribution, TENET and part-model objectives); OBJECTIVES: the registered ones by name."""
from .checkpoint import CheckpointError, load_checkpoint, load_weights, save_checkpoint, save_weights
from .objectives import (MAT, PGDAT, TRADES, CrossEntropy, Distillation, FastAT, FreeAT,
                         Objective)
from .objectives import CACRWACR, IGNorm, IGSumNorm
from .objectives import PartMAT, PartSemiSupervised, PartTRADES
from .objectives import TenetFreeAT, TenetObjective
from .objective_registry import OBJECTIVE_ENTRIES, OBJECTIVES, ObjectiveEntry, register_objective
from .callbacks import Callback
from .tensorboard_writer import TensorBoardWriter
from .trainer import Trainer

__all__ = ["Trainer", "Objective", "CrossEntropy", "PGDAT", "TRADES", "MAT", "FastAT", "FreeAT", "Distillation",
           "OBJECTIVES", "save_checkpoint", "load_checkpoint", "save_weights", "load_weights",
           "CheckpointError", "IGNorm", "IGSumNorm", "CACRWACR"]
__all__ += ["PartSemiSupervised", "PartTRADES", "PartMAT"]
__all__ += ["TenetObjective", "TenetFreeAT"]
__all__ += ["Callback", "TensorBoardWriter"]
__all__ += ["OBJECTIVE_ENTRIES", "ObjectiveEntry", "register_objective"]
