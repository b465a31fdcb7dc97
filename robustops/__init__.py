"""robustops: fused kernels, drop-in layers and evaluators for robust vision models.

Functional ops: ``robustops.pgd_step``, ``robustops.pgd_step_`` (in place),
``robustops.random_init``. Backends: ``robustops.backend`` (``available()``, ``use()``).
"""
from . import backend
from .ops import pgd_step, pgd_step_, pgd_step_reference
from .random_init import random_init

__version__ = "0.1.0"
__all__ = ["backend", "pgd_step", "pgd_step_", "pgd_step_reference", "random_init", "__version__"]
