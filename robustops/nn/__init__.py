"""Drop-in nn.Modules: thin wrappers around the functional ops."""
from .vone_block import VOneBlock

__all__ = ["VOneBlock"]
