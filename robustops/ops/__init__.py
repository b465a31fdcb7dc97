"""Functional ops: one op per file, each a torch.library custom op with a reference."""
from .pgd_step import pgd_step, pgd_step_, pgd_step_reference
from .random_init import random_init

__all__ = ["pgd_step", "pgd_step_", "pgd_step_reference", "random_init"]
