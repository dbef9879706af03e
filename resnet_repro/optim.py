"""The optimizer a run trains with, and how each step's learning rate reaches it.

``make_optimizer`` is the factory (SGD or Adam from the config; fused, and for Adam capturable,
when the step is captured as a CUDA graph). ``set_lr`` writes a step's learning rate
(``schedule.get_lr``) into every parameter group before the step, as nanoGPT's loop does:
the rate is a function of the step, so nothing but the step count needs saving, and a graph
that replays the step reads it from the device tensor ``hold_lr_in_tensors`` made.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from resnet_repro.config import TrainConfig


def optimizer_flags(config: TrainConfig) -> dict[str, bool | None]:
    """A captured step needs an optimizer whose whole update runs on the device: the fused
    kernels (and, for Adam, its step counter on the device). Otherwise torch's defaults."""
    graph = config.cuda_graph
    flags: dict[str, bool | None] = {"fused": True if graph else None}
    if config.optimizer == "adam":
        flags["capturable"] = graph
    return flags


def make_optimizer(
    config: TrainConfig, parameters: Iterable[nn.Parameter]
) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov) or Adam, with the config's learning rate and weight decay."""
    if config.optimizer == "adam":
        return torch.optim.Adam(
            parameters, lr=config.lr, weight_decay=config.weight_decay, **optimizer_flags(config)
        )
    return torch.optim.SGD(
        parameters,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov,
        **optimizer_flags(config),
    )


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
