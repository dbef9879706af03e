"""The optimizer a run trains with, and how each step's learning rate reaches it.

``make_optimizer`` is the factory (SGD or Adam from the config's optimizer section; fused, and
for Adam capturable, when the step is captured as a CUDA graph; Adam fused on the CPU, for its
square root).
``set_lr`` writes a step's learning rate (``schedule.get_lr``) into every parameter group
before the step, as nanoGPT's loop does:
the rate is a function of the step, so nothing but the step count needs saving, and a graph
that replays the step reads it from the device tensor ``hold_lr_in_tensors`` made.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from resnet_repro.config import OptimizerSettings


def optimizer_flags(
    optimizer: str, device: torch.device, *, captured: bool
) -> dict[str, bool | None]:
    """A step ``captured`` as a CUDA graph needs an optimizer whose whole update runs on the
    device: the fused kernels (and, for Adam, its step counter on the device). On the CPU, Adam
    is fused too: its unfused update takes ``torch.sqrt``, which MKL computes to within one ulp
    only, and differently on Intel and AMD CPUs (docs/measurements.md); the fused kernel's
    square root is exact, so a pinned CPU run gives the same bits on both. Otherwise torch's
    defaults."""
    fused = captured or (optimizer == "adam" and device.type == "cpu")
    flags: dict[str, bool | None] = {"fused": True if fused else None}
    if optimizer == "adam":
        flags["capturable"] = captured
    return flags


def make_optimizer(
    settings: OptimizerSettings,
    parameters: Iterable[nn.Parameter],
    device: torch.device,
    *,
    captured: bool = False,
) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov) or Adam, with the section's learning rate and weight decay, for
    parameters on ``device``; ``captured`` when its steps are replayed as a CUDA graph (its
    learning rates then device tensors, ``hold_lr_in_tensors``)."""
    flags = optimizer_flags(settings.optimizer, device, captured=captured)
    if settings.optimizer == "adam":
        optimizer = torch.optim.Adam(
            parameters, lr=settings.lr, weight_decay=settings.weight_decay, **flags
        )
    else:
        optimizer = torch.optim.SGD(
            parameters,
            lr=settings.lr,
            momentum=settings.momentum,
            weight_decay=settings.weight_decay,
            nesterov=settings.nesterov,
            **flags,
        )
    if captured:
        hold_lr_in_tensors(optimizer, device)
    return optimizer


def hold_lr_in_tensors(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """A CUDA graph replays the learning rate it recorded, so with cuda_graph each group's lr
    is a device tensor that ``set_lr`` fills in place before every step."""
    for group in optimizer.param_groups:
        group["lr"] = torch.tensor(float(group["lr"]), device=device)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """This step's learning rate into every parameter group (in place for a device tensor)."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr
