"""robustops: fused kernels, drop-in layers and evaluators for robust vision models.

Functional ops: ``robustops.pgd_step``, ``robustops.pgd_step_`` (in place),
``robustops.random_init``, ``robustops.gabor_bank`` (V1 filter banks),
``robustops.v1_response`` (the fused V1 epilogue). Modules: ``robustops.nn``. Backends: ``robustops.backend`` (``available()``, ``use()``).
"""
from . import backend
from .ops import pgd_step, pgd_step_, pgd_step_reference
from .ops import channel_kmeans, group_inhibition_mask, group_orthogonality_loss
from .ops import ig_accumulate, pixel_softmax_kl, rank_metrics, sign_matched_product
from .ops.gabor_bank import gabor_bank
from .ops.part_moments import part_moments
from .ops.v1_response import v1_response
from .random_init import random_init
from .attacks.autoattack import autoattack

__version__ = "0.1.0"
__all__ = ["backend", "gabor_bank", "pgd_step", "pgd_step_", "pgd_step_reference", "random_init",
           "v1_response", "__version__",
           "channel_kmeans", "group_inhibition_mask", "group_orthogonality_loss",
           "ig_accumulate", "pixel_softmax_kl", "sign_matched_product", "rank_metrics"]
__all__ += ["part_moments"]
__all__ += ["Normalize", "normalized"]


def __getattr__(name):
    # Normalize / normalized on first use: importing robustops.nn pulls in torchvision
    # (seconds), which `import robustops` should not pay for.
    if name in ("Normalize", "normalized"):
        from .nn import normalize

        return getattr(normalize, name)
    raise AttributeError(f"module 'robustops' has no attribute {name!r}")
__all__ += ["autoattack"]
