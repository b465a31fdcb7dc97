"""Functional ops: one op per file, each a torch.library custom op with a reference."""
from .pgd_step import pgd_step, pgd_step_, pgd_step_reference

__all__ = ["pgd_step", "pgd_step_", "pgd_step_reference"]
