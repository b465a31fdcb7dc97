"""Functional ops: one op per file, each a torch.library custom op with a reference."""
from .gabor_bank import gabor_bank
from .pgd_step import pgd_step, pgd_step_, pgd_step_reference
from .v1_response import v1_response

__all__ = ["gabor_bank", "pgd_step", "pgd_step_", "pgd_step_reference", "v1_response"]
