"""Differentiable attributions, the softplus surrogate, and the rank metrics of attribution
robustness (METHODS.md section 5).

Attributions (each usable with ``create_graph=True`` inside a loss): ``saliency``,
``input_x_gradient``, ``integrated_gradients`` (path points batched along the batch
dimension, chunked by ``internal_batch_size``, accumulated by the fused
``robustops::ig_accumulate`` op), ``integrated_gradients_multi`` (several targets,
one path), ``smoothgrad`` (counter-based noise keyed by sample index).
captum-shaped classes over them: ``IntegratedGradients``, ``Saliency``, ``InputXGradient``
(``.attribute(inputs, baselines=, target=, n_steps=, method=)``).
``softplus_surrogate``: ReLU -> softplus(beta) inside a block. Metrics, batched on
the tensors' device: ``rank_metrics`` (all three at once), ``topk_intersection``,
``kendall_tau`` (tau-b), ``spearman_rho``.
"""
from ..ops.rank_metrics import kendall_tau, rank_metrics, spearman_rho, topk_intersection
from .captum_style import InputXGradient, IntegratedGradients, Saliency
from .input_x_gradient import input_x_gradient
from .integrated_gradients import (METHODS, integrated_gradients, integrated_gradients_multi,
                                   path_alphas)
from .saliency import saliency
from .smoothgrad import smoothgrad
from .surrogate import softplus_surrogate
from .targets import OUTPUTS

__all__ = ["saliency", "input_x_gradient", "integrated_gradients", "integrated_gradients_multi",
           "path_alphas", "smoothgrad", "softplus_surrogate", "rank_metrics",
           "topk_intersection", "kendall_tau", "spearman_rho", "METHODS", "OUTPUTS",
           "IntegratedGradients", "Saliency", "InputXGradient"]
