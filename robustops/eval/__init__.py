"""Evaluation: robust accuracy with early exit and hygiene checks."""
from .hygiene import EvaluationHygieneError, find_problems
from .robust_accuracy import RobustAccuracy, robust_accuracy

__all__ = ["robust_accuracy", "RobustAccuracy", "EvaluationHygieneError", "find_problems"]
