"""What training and evaluation share at run time: the device a config asks for, data as
device tensors, autocast, deterministic kernels, compilation, and the model a config describes.

Training (``train.py``) and evaluation (``evaluate.py``) both build on this module; neither
imports the other's engine for it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor, nn

from resnet_repro.config import ConfigError, NetworkSettings
from resnet_repro.kernels import apply_pin
from resnet_repro.net import ResNet


def resolve_device(name: str) -> torch.device:
    """``"auto"`` picks CUDA, then MPS, then CPU; any other name must be a torch device that
    exists here. Raises ConfigError naming the device otherwise."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"device {name!r} is not a valid torch device") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available here")
    return device


def to_device(x: np.ndarray, y: np.ndarray, device: torch.device) -> tuple[Tensor, Tensor]:
    """uint8 rows ``[N, 3072]`` as images ``[N, 3, 32, 32]`` and int64 labels on ``device``.
    ``np.array`` copies a read-only memory-mapped cache into writable memory torch accepts."""
    return (
        torch.from_numpy(np.array(x)).view(-1, 3, 32, 32).to(device),
        torch.from_numpy(np.array(y)).to(device),
    )


def autocast(
    device: torch.device, precision: str, *, cache: bool = True
) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``precision == "bf16"``, nothing for fp32. ``cache=False`` for code a
    CUDA graph records: autocast's cache of cast weights must not outlive the capture."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return contextlib.nullcontext()


@contextlib.contextmanager
def deterministic_kernels(enabled: bool) -> Iterator[None]:
    """Deterministic kernels while the block runs (when ``enabled``), and the process's previous
    settings afterwards: torch's flags are process-wide, and a deterministic run must not change
    the kernels of whatever the process runs next. What still varies: results differ across GPU
    models, driver/CUDA/cuDNN and torch versions, and between CPU and GPU."""
    if not enabled:
        yield
        return
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    # cuBLAS reads this when its first handle is made; later changes have no effect.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[2:]


class CompiledForBatch(nn.Module):
    """``module`` run through ``torch.compile`` for batches of ``batch_size`` images and eagerly
    for any other size (an epoch's last, smaller batch; a split's last evaluation batch), so
    one compilation serves a whole run instead of one more per batch shape.

    Compilation uses static shapes: with automatic dynamic shapes the kernels a batch size gets
    depend on which sizes the process saw before, so a resumed process would compute with other
    kernels than an uninterrupted one. Here each size's kernels are independent of history.
    ``mode`` is torch.compile's (``reduce-overhead``: CUDA graphs)."""

    def __init__(self, module: nn.Module, *, batch_size: int, mode: str = "default") -> None:
        super().__init__()
        self.module = module
        self.batch_size = batch_size
        self.compiled = torch.compile(module, dynamic=False, mode=mode)

    def forward(self, x: Tensor) -> Tensor:
        if len(x) == self.batch_size:
            return self.compiled(x)
        return self.module(x)


def build_model(network: NetworkSettings, *, generator: torch.Generator | None = None) -> ResNet:
    """The network its section describes, initialized from ``generator`` (on the CPU). In a
    process pinned to portable CPU kernels (kernels.py), the pin's torch flags are set first:
    training and evaluation both build their network before running it."""
    apply_pin()
    return ResNet(
        network.version,
        network.resnet_size,
        num_classes=network.num_classes,
        first_num_filters=network.first_num_filters,
        bn_momentum=network.bn_momentum,
        start_output_bn_momentum=network.start_output_bn_momentum,
        shortcut=network.shortcut,
        bottleneck_stride=network.bottleneck_stride,
        v2_projection_bn=network.v2_projection_bn,
        init=network.init,
        generator=generator,
    )
