"""Drop-in nn.Modules: thin wrappers around the functional ops."""
from .group_inhibition import GroupInhibition, InhibitionStep
from .normalize import Normalize, normalized
from .vone_block import VOneBlock

__all__ = ["VOneBlock", "GroupInhibition", "InhibitionStep", "Normalize", "normalized"]
