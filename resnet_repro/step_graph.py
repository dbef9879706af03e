"""Whole-step CUDA graphs: one training step (forward, loss, backward, optimizer) recorded once
and replayed for every full-size batch, so a step costs one launch instead of about a thousand.

At the papers' batch of 128 a ResNet-110 step is a millisecond or two of a GPU's arithmetic but
tens of milliseconds of Python launching small kernels one after another; a replayed graph
launches them all at once. What a replay cannot do, the caller arranges:

* Inputs: a graph reads the addresses it recorded, so each batch is copied into static
  buffers first (the batched augmentation stays outside, eager: its random draws come from the
  run's generator, and it is a handful of kernels).
* The learning rate: a Python float would be frozen into the graph, so the optimizer reads it
  from a device tensor that `optim.set_lr` fills in place (``Trainer`` sets that up, with the
  fused optimizers, which take such a tensor).
* Other batch sizes (an epoch's last, smaller batch) run eagerly, through the same step
  function and the same parameters and optimizer state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from resnet_repro.config import ConfigError, TrainConfig

# Real steps run eagerly before capture: they create the optimizer's state and the libraries'
# workspaces, which must exist before a graph records their addresses (PyTorch's guide uses 3).
WARMUP_STEPS = 3

Step = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


class CudaGraphs:
    """Warm-up stream and capture on one CUDA device."""

    def __init__(self, device: torch.device) -> None:
        if device.type != "cuda":
            raise ConfigError(
                f"cuda_graph needs a CUDA device, but this run's device is {device.type}: "
                "leave out --cuda-graph, or run on a GPU"
            )
        self.device = device
        self.stream = torch.cuda.Stream(device)

    @contextlib.contextmanager
    def warmup(self) -> Iterator[None]:
        """Eager steps before capture run on a side stream, as PyTorch's guide requires."""
        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            yield
        current.wait_stream(self.stream)

    def capture(self, record: Callable[[], None]) -> Callable[[], None]:
        """Record ``record``'s kernels (without running them); returns the graph's replay."""
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            record()
        return graph.replay


class StepGraph:
    """Runs ``step(x, y) -> (loss, logits)`` for each batch: eagerly for the first
    ``WARMUP_STEPS`` full batches, then as replays of one captured graph; batches of another
    size than ``batch_size`` always eagerly.

    The returned tensors of a replay are the graph's static outputs: the next replay overwrites
    them, so read them (or queue work on them) before the next call.
    """

    def __init__(
        self, step: Step, *, batch_size: int, device: torch.device, channels_last: bool
    ) -> None:
        self.graphs = CudaGraphs(device)
        self.step = step
        self.x = torch.zeros(batch_size, 3, 32, 32, device=device)
        if channels_last:
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.y = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.warmup_steps = 0
        self.replay: Callable[[], None] | None = None
        self.outputs: tuple[Tensor, Tensor] | None = None

    @classmethod
    def for_run(
        cls, step: Step, config: TrainConfig, device: torch.device, world_size: int
    ) -> StepGraph | None:
        """The graph of a run's steps, which runs in one process; None without ``cuda_graph``."""
        if not config.cuda_graph:
            return None
        if world_size > 1:
            raise ConfigError(
                f"cuda_graph runs in one process, not in {world_size} torchrun ranks: "
                "leave out --cuda-graph, or run one process per GPU"
            )
        return cls(
            step, batch_size=config.batch_size, device=device, channels_last=config.channels_last
        )

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if len(x) != len(self.x):
            return self.step(x, y)
        self.x.copy_(x)
        self.y.copy_(y)
        if self.replay is None and self.warmup_steps < WARMUP_STEPS:
            self.warmup_steps += 1
            with self.graphs.warmup():
                return self.step(self.x, self.y)
        if self.replay is None:
            self.replay = self.graphs.capture(self._record)
        self.replay()
        assert self.outputs is not None
        return self.outputs

    def _record(self) -> None:
        self.outputs = self.step(self.x, self.y)
