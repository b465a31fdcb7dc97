"""Adversarial attacks: FGSM, PGD (L-inf, L2), APGD (CE, DLR), APGD-T, FAB, Square and the
AutoAttack suite, with EOT and early exit."""
from .apgd import APGD
from .apgd_targeted import APGDTargeted
from .autoattack import AutoAttack, AutoAttackResult, autoattack, gradient_masking_check
from .fab import FAB
from .square import Square
from .base import Attack
from .losses import LOSSES, attack_loss
from .model_state import attack_state
from .pgd import FGSM, PGD

__all__ = ["Attack", "FGSM", "PGD", "APGD", "attack_loss", "attack_state", "LOSSES"]
__all__ += ["APGDTargeted", "FAB", "Square", "AutoAttack", "AutoAttackResult", "autoattack",
            "gradient_masking_check"]
