"""Evaluation: robust accuracy with early exit and hygiene checks; sharded across processes."""
from .dataset_batches import shard_batches
from .hygiene import EvaluationHygieneError, find_problems
from .accuracy import accuracy
from .robust_accuracy import RobustAccuracy, robust_accuracy
from .robustness_curve import RobustnessCurve, robustness_curve

__all__ = ["accuracy", "robust_accuracy", "RobustAccuracy", "EvaluationHygieneError", "find_problems",
           "shard_batches", "robustness_curve", "RobustnessCurve"]
