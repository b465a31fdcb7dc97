"""GroupInhibition: TENET's group-wise inhibition step, attached to a named layer of any model.

METHODS.md section 2. ``GroupInhibition(model, "layer2")`` registers one forward hook on
that layer (``.remove()`` or a ``with`` block takes it off again). The hook records the
layer's output F (``.features``, the last forward's, with its graph) and, only while an
inhibition step is running, either exposes F to autograd (step 1) or multiplies it by the
mask (step 4); otherwise the model computes exactly what it computed before.

``step(x, y)`` (or calling the module) runs the whole step of the paper's code
(LinusWu/TENET_Training, TENET/Tenet.py):

1. the model in eval mode: G = dF of sum_b sigmoid(logits)_{b, y_b} (only the layers
   after F are differentiated: F enters the rest of the network as a fresh leaf);
2. ``channel_kmeans`` of that F, per sample (K groups, seeded by (seed, sample index));
3. ``group_inhibition_mask(F, G, assignment)`` (no gradient);
4. the model back in its own mode (train, in training): a second forward through
   ``forward`` (the model, or a wrapper of it such as DDP) in which the layer's output F'
   is multiplied by the mask; F' (unmasked, with its graph) becomes ``.features``;
5. ``group_orthogonality_loss(F', assignment)``.

It returns an ``InhibitionStep``: the masked forward's logits and the orthogonality loss
(both differentiable), and the mask, assignment, F and G of steps 1-3 (detached). TENET's
loss is then 0.1 * CE(logits, y) + 1e-3 * orth_loss (robustops.train.TenetObjective).

Half/bfloat16 feature maps (autocast) are grouped and masked in float32; the mask is
applied in the feature map's dtype.
"""
from __future__ import annotations

import contextlib
import difflib
from typing import Callable, NamedTuple, Optional, Union

import torch
from torch import Tensor, nn

from ..arguments import check_labels, positive_int
from ..ops.channel_kmeans import channel_kmeans
from ..ops.group_inhibition_mask import group_inhibition_mask
from ..ops.group_orthogonality_loss import group_orthogonality_loss

__all__ = ["GroupInhibition", "InhibitionStep", "find_layer", "unwrap_model"]


class InhibitionStep(NamedTuple):
    """What GroupInhibition.step computed."""

    logits: Tensor      # (B, classes): the masked forward (differentiable)
    orth_loss: Tensor   # 0-d: group_orthogonality_loss of the re-forward's unmasked F
    mask: Tensor        # (B, C, H, W): the mask that multiplied F (no gradient)
    assignment: Tensor  # (B, C) int64: the channel groups
    features: Tensor    # (B, C, H, W): F of the eval-mode forward (detached)
    grad: Tensor        # (B, C, H, W): G = dF of sum_b sigmoid(logits)_{b, y_b}


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """model's submodule called `name` (as named_modules() spells it); a ValueError that
    lists the closest names otherwise."""
    modules = dict(model.named_modules())
    if isinstance(name, str) and name and name in modules:
        return modules[name]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(str(name), names, n=5, cutoff=0.5)
    hint = (f"closest: {', '.join(close)}" if close else
            f"top-level layers: {', '.join(n for n in names if '.' not in n)[:400]}")
    raise ValueError(f"GroupInhibition: {type(model).__name__} has no layer named {name!r} "
                     f"({hint})")


class GroupInhibition(nn.Module):
    """TENET's group-wise inhibition on the output of `layer` of `model` (forward hook).

    model: any nn.Module (DDP / compile wrappers are unwrapped to find the layer; the
    model is not registered as a submodule, so this module has no parameters).
    layer: the layer's name in model.named_modules() (e.g. "stage2" of robustops'
    ResNeXt-29, "layer2" of a torchvision ResNet); its output must be (B, C, H, W).
    num_groups: K in [1, C]; max_iter, shift_threshold: the k-means' (METHODS.md: 6, 50,
    1e-4); seed: keys the k-means initialisation with the sample index given to step().
    """

    def __init__(self, model: nn.Module, layer: str, num_groups: int = 6, *,
                 max_iter: int = 50, shift_threshold: float = 1e-4, seed: int = 0):
        super().__init__()
        positive_int(num_groups, "num_groups", where="GroupInhibition")
        inner = unwrap_model(model)
        self.__dict__["model"] = inner  # not a submodule: no parameters of its own
        self.layer_name = layer
        self.__dict__["layer"] = find_layer(inner, layer)
        self.num_groups, self.max_iter = num_groups, max_iter
        self.shift_threshold, self.seed = shift_threshold, seed
        self.features: Optional[Tensor] = None
        self.assignment: Optional[Tensor] = None
        self._mode: Optional[str] = None       # None | "grad" (step 1) | "mask" (step 4)
        self._mask: Optional[Tensor] = None
        self._handle = self.layer.register_forward_hook(self._hook)

    # ------------------------------------------------------------------ the hook

    def _hook(self, module: nn.Module, inputs, output):
        if self._mode is None:
            self.features = output if isinstance(output, Tensor) else None
            return None
        if not isinstance(output, Tensor) or output.ndim != 4:
            got = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
            raise ValueError(f"GroupInhibition: layer {self.layer_name!r} must output a 4-D "
                             f"(B, C, H, W) feature map, got {got}")
        if self.num_groups > output.shape[1]:
            raise ValueError(f"GroupInhibition: num_groups = {self.num_groups} exceeds the "
                             f"{output.shape[1]} channels of layer {self.layer_name!r} (K "
                             "must be in [1, C])")
        self.features = output
        if self._mode == "grad":
            # F as a leaf: G needs only the layers after it, and frozen models work too.
            self.features = output.detach().requires_grad_(True)
            return self.features
        if self._mask.shape != output.shape:
            raise ValueError(f"GroupInhibition: the mask has shape {tuple(self._mask.shape)} "
                             f"but layer {self.layer_name!r} output {tuple(output.shape)}; "
                             "re-forward the same batch")
        return output * self._mask.to(output.dtype)

    @contextlib.contextmanager
    def _mode_as(self, mode: Optional[str], mask: Optional[Tensor] = None):
        self._mode, self._mask = mode, mask
        try:
            yield
        finally:
            self._mode, self._mask = None, None

    # ------------------------------------------------------------------ the step

    def gradient(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Step 1: (F, G) with the model in eval mode, G = dF sum_b sigmoid(logits)_{b,y_b}.

        Both detached; the model's mode is restored afterwards.
        """
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.enable_grad(), self._mode_as("grad"):
                self.features = None
                logits = self.model(x)
                if self.features is None:
                    raise ValueError(f"GroupInhibition: layer {self.layer_name!r} did not run "
                                     "in the model's forward")
                f = self.features
                check_labels(logits, y)  # -100 and the like: gather would fail deep inside
                score = torch.sigmoid(logits.float()).gather(1, y.reshape(-1, 1)).sum()
                (g,) = torch.autograd.grad(score, f)
        finally:
            self.model.train(was_training)
        return f.detach(), g.detach()

    def group(self, features: Tensor, index: Union[None, int, Tensor] = None) -> Tensor:
        """Step 2: the (B, C) channel_kmeans assignment of features (stored as .assignment)."""
        self.assignment = channel_kmeans(features.detach().float(), self.num_groups,
                                         max_iter=self.max_iter,
                                         shift_threshold=self.shift_threshold, seed=self.seed,
                                         index=index).assignment
        return self.assignment

    def mask(self, features: Tensor, grad: Tensor, assignment: Tensor) -> Tensor:
        """Step 3: group_inhibition_mask (float32 or float64; no gradient)."""
        dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
        return group_inhibition_mask(features.detach().to(dtype), grad.detach().to(dtype),
                                     assignment, self.num_groups)

    def masked_forward(self, x: Tensor, mask: Tensor,
                       forward: Optional[Callable[[Tensor], Tensor]] = None) -> Tensor:
        """Step 4: logits of forward(x) (default: the model) with the layer's output
        multiplied by mask; .features becomes that output before the mask (with its graph)."""
        with self._mode_as("mask", mask):
            return (forward or self.model)(x)

    def orthogonality_loss(self, features: Optional[Tensor] = None,
                           assignment: Optional[Tensor] = None) -> Tensor:
        """Step 5: group_orthogonality_loss of F (default: .features, the last forward's)
        and the assignment (default: .assignment, the last grouping's); differentiable."""
        f = self.features if features is None else features
        a = self.assignment if assignment is None else assignment
        if f is None or a is None:
            raise ValueError("GroupInhibition: no feature map or assignment yet; run a forward "
                             "and group() (or step()) first")
        if f.dtype not in (torch.float32, torch.float64):
            f = f.float()
        return group_orthogonality_loss(f, a, self.num_groups)

    def step(self, x: Tensor, y: Tensor, *, forward: Optional[Callable[[Tensor], Tensor]] = None,
             index: Union[None, int, Tensor] = None) -> InhibitionStep:
        """The whole inhibition step on the batch (x, y); see the module docstring.

        forward: what runs the masked forward (default: the model itself; the Trainer's
        DDP-wrapped network, so that gradients are synchronised). index: global sample
        indices (or an offset) keying the k-means initialisation.
        """
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"GroupInhibition: x must be a floating tensor of images, got "
                            f"{x.dtype if isinstance(x, Tensor) else type(x).__name__}")
        if not isinstance(y, Tensor) or y.dtype != torch.int64 or y.ndim != 1:
            raise ValueError(f"GroupInhibition: y must be an int64 tensor of labels (B,), got "
                             f"{(tuple(y.shape), y.dtype) if isinstance(y, Tensor) else type(y).__name__}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"GroupInhibition: x has {x.shape[0]} samples, y {y.shape[0]}")
        f, g = self.gradient(x, y)
        assignment = self.group(f, index)
        mask = self.mask(f, g, assignment)
        logits = self.masked_forward(x, mask, forward)
        return InhibitionStep(logits, self.orthogonality_loss(), mask, assignment, f, g)

    def forward(self, x: Tensor, y: Tensor, **kw) -> InhibitionStep:
        return self.step(x, y, **kw)

    # ------------------------------------------------------------------ lifetime

    def remove(self) -> None:
        """Take the hook off the layer (idempotent); the model is then as it was."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self.features = None

    @property
    def attached(self) -> bool:
        return self._handle is not None

    def __enter__(self) -> "GroupInhibition":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def extra_repr(self) -> str:
        return (f"layer={self.layer_name!r}, num_groups={self.num_groups}, "
                f"max_iter={self.max_iter}, seed={self.seed}, attached={self.attached}")
