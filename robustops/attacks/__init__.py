"""Adversarial attacks: FGSM, PGD (L-inf, L2), APGD (CE, DLR), with EOT and early exit."""
from .apgd import APGD
from .base import Attack
from .losses import LOSSES, attack_loss
from .model_state import attack_state
from .pgd import FGSM, PGD

__all__ = ["Attack", "FGSM", "PGD", "APGD", "attack_loss", "attack_state", "LOSSES"]
