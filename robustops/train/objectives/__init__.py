"""Training objectives, pluggable into the Trainer (subclass Objective for your own).

The names `robustops train` knows: robustops.train.objective_registry."""
from .base import Objective
from .cacr_wacr import CACRWACR
from .ce import CrossEntropy
from .distillation import Distillation
from .fast_at import FastAT
from .free_at import FreeAT
from .mat import MAT
from .part_mat import PartMAT
from .part_semi import PartSemiSupervised
from .part_trades import PartTRADES
from .pgd_at import PGDAT
from .rar import IGNorm, IGSumNorm
from .tenet import TenetFreeAT, TenetObjective
from .trades import TRADES

__all__ = ["Objective", "CrossEntropy", "PGDAT", "TRADES", "MAT", "FastAT", "FreeAT", "Distillation",
           "IGNorm", "IGSumNorm", "CACRWACR"]
__all__ += ["PartSemiSupervised", "PartTRADES", "PartMAT"]
__all__ += ["TenetObjective", "TenetFreeAT"]
