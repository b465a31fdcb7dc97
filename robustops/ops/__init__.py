"""Functional ops: one op per file, each a torch.library custom op with a reference."""
from .box_hyperplane_step import box_hyperplane_step
from .channel_kmeans import channel_kmeans
from .gabor_bank import gabor_bank
from .group_inhibition_mask import group_inhibition_mask
from .group_orthogonality_loss import group_orthogonality_loss
from .ig_accumulate import ig_accumulate
from .pixel_softmax_kl import pixel_softmax_kl
from .rank_metrics import kendall_tau, rank_metrics, spearman_rho, topk_intersection
from .sign_matched_product import sign_matched_product
from .part_moments import part_moments
from .pgd_step import pgd_step, pgd_step_, pgd_step_reference
from .v1_response import v1_response

__all__ = ["gabor_bank", "pgd_step", "pgd_step_", "pgd_step_reference", "v1_response",
           "channel_kmeans", "group_inhibition_mask", "group_orthogonality_loss",
           "ig_accumulate", "pixel_softmax_kl", "sign_matched_product", "rank_metrics",
           "topk_intersection", "kendall_tau", "spearman_rho"]
__all__ += ["part_moments"]
__all__ += ["box_hyperplane_step"]
