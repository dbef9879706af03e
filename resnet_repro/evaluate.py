"""Evaluation: the loss and accuracy of a model on a split (``evaluate_model``, which training
uses each epoch too), of a run's checkpoints (``evaluate_run``), and prediction on image files.

``evaluate_run`` restores each requested ``model-{epoch}.ckpt`` of a run directory, prints the
seed's lines (``Restored model parameters from …`` / ``Test accuracy: 0.8986``) and writes
``eval-{split}.json`` beside the checkpoints. ``predict`` classifies image files.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from resnet_repro.checkpoint import CheckpointError, check_architecture, load_checkpoint
from resnet_repro.cifar import LABEL_NAMES
from resnet_repro.config import ConfigError, TrainConfig
from resnet_repro.data import load_splits
from resnet_repro.image_utils import Normalization
from resnet_repro.net import ResNet
from resnet_repro.pack import read_image
from resnet_repro.run_folder import read_provenance
from resnet_repro.runtime import autocast, build_model, resolve_device, to_device

SPLITS = ("valid", "test", "train")


@torch.no_grad()
def evaluate_model(
    forward: nn.Module,
    x: Tensor,
    y: Tensor,
    normalize: Normalization,
    batch_size: int,
    precision: str = "fp32",
    channels_last: bool = False,
) -> tuple[float, float]:
    """Mean loss and accuracy of ``forward`` (a model, compiled or not) in eval mode over
    uint8 images ``x`` on the device, normalized but not augmented, ``batch_size`` at a time
    (the config's ``eval_batch_size``); NaN for no images."""
    forward.eval()
    if len(y) == 0:
        return float("nan"), float("nan")
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for start in range(0, len(y), batch_size):
        xb = normalize(x[start : start + batch_size])
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        yb = y[start : start + batch_size]
        with autocast(x.device, precision):
            logits = forward(xb).float()
        loss_sum += nn.functional.cross_entropy(logits, yb, reduction="sum")
        correct += (logits.argmax(1) == yb).sum()
    return float(loss_sum) / len(y), float(correct) / len(y)


def parse_checkpoints(spec: str) -> list[int]:
    """``"160:200:10"`` -> [160, 170, 180, 190, 200] (inclusive); ``"50,100"`` -> [50, 100];
    both mix: ``"160:180:10,182"``."""
    epochs: list[int] = []
    empty = None
    try:
        for part in str(spec).split(","):
            if ":" in part:
                start, stop, step = (int(v) for v in part.split(":"))
                if step < 1:
                    raise ValueError
                if start > stop:
                    empty = f"{part} names no epoch (START {start} is after STOP {stop})"
                epochs += range(start, stop + 1, step)
            else:
                epochs.append(int(part))
    except ValueError as e:
        raise ConfigError(
            f"checkpoints {spec!r}: expected START:STOP:STEP (e.g. 160:200:10), a list "
            "(50,100) or both (160:180:10,182)"
        ) from e
    if empty is not None:
        raise ConfigError(f"checkpoints {spec!r}: {empty}; write START <= STOP")
    if not epochs:
        raise ConfigError(f"checkpoints {spec!r}: no epoch given")
    return sorted(set(epochs))


@dataclass
class Restored:
    """A checkpoint's network (on a device, in eval mode), its config, its input transform and
    the names of its classes (its training data's; CIFAR-10's for checkpoints without them)."""

    model: ResNet
    config: TrainConfig
    normalize: Normalization
    label_names: tuple[str, ...]


def model_from_checkpoint(
    path: Path, device: torch.device, *, expected: TrainConfig | None = None
) -> Restored:
    """The network saved at ``path``; with ``expected`` (the run's config), a checkpoint of
    another architecture is refused instead of evaluated as if it were the run's."""
    state = load_checkpoint(path)
    try:
        config = TrainConfig.from_dict(state["config"])
        normalize = Normalization.from_state(state.get("normalization"))
    except ValueError as e:  # ConfigError included
        raise CheckpointError(f"{path}: the recorded config is not valid here ({e})") from e
    if expected is not None:
        check_architecture(state, expected, path, resuming=False)
    model = build_model(config)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the recorded architecture ({e})") from e
    names = state.get("label_names") or LABEL_NAMES
    if len(names) != config.num_classes or not all(isinstance(n, str) for n in names):
        names = tuple(str(i) for i in range(config.num_classes))
    return Restored(model.to(device).eval(), config, normalize.to(device), tuple(names))


def load_eval_data(
    run: Path, data: str | None, device: torch.device, splits: tuple[str, ...]
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], str]:
    """The requested splits of the data the run was trained on (or ``data``), as device
    tensors, and the source's md5."""
    config = TrainConfig.load(run / "config.yaml")
    if data is not None:
        config = dataclasses.replace(config, data=data)
    elif not Path(config.data).exists():
        config = dataclasses.replace(config, data=recorded_data(run, config.data))
    loaded = load_splits(config)
    arrays = {
        "valid": (loaded.x_valid, loaded.y_valid),
        "test": (loaded.x_test, loaded.y_test),
        "train": (loaded.x_train, loaded.y_train),
    }
    # A rehearsal's run evaluates its first images only, as its training did.
    evaluated = slice(config.limit_eval_images or None)
    return {
        name: to_device(*(a[evaluated] for a in arrays[name]), device) for name in splits
    }, loaded.source_md5


def recorded_data(run: Path, data: str) -> str:
    """Where the run's data was, as an absolute path, when its config names a relative one that
    does not exist from here (evaluation from another folder than training's)."""
    for segment in reversed(read_provenance(run)):
        if Path(segment.get("data_path", "")).exists():
            return segment["data_path"]
    raise ConfigError(
        f"{run}: the run's data {data!r} is not found from {Path.cwd()} (it was given relative "
        "to the folder training ran in); pass --data with its location"
    )


def checkpoint_paths(run: Path, epochs: list[int]) -> list[Path]:
    if not run.is_dir():
        raise CheckpointError(f"{run}: no such run directory")
    paths = [run / f"model-{e}.ckpt" for e in epochs]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        found = sorted(p.name for p in run.glob("model-*.ckpt")) or ["none"]
        raise CheckpointError(
            f"{run}: no checkpoint {', '.join(missing)} (found: {', '.join(found)})"
        )
    return paths


def loss_and_accuracy(
    path: Path, x: torch.Tensor, y: torch.Tensor, *, expected: TrainConfig | None = None
) -> tuple[float, float]:
    """(loss, accuracy) of the checkpoint at ``path`` on uint8 images ``x``; ``expected`` as
    in ``model_from_checkpoint``."""
    restored = model_from_checkpoint(path, x.device, expected=expected)
    c, normalize = restored.config, restored.normalize
    return evaluate_model(
        restored.model, x, y, normalize, c.eval_batch_size, c.precision, c.channels_last
    )


def evaluate_run(
    run_dir: str | os.PathLike,
    epochs: list[int],
    *,
    split: str = "valid",
    data: str | None = None,
    device: str = "auto",
    echo: bool = True,
) -> dict[str, Any]:
    """Accuracy of each ``model-{epoch}.ckpt`` on ``split``; written to ``eval-{split}.json``."""
    run = Path(run_dir)
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    paths = checkpoint_paths(run, epochs)
    run_config = TrainConfig.load(run / "config.yaml")
    continued = [e for e in epochs if e > run_config.epochs and run_config.continue_epochs]
    if split == "valid" and continued:
        raise ConfigError(
            f"{run}: checkpoint(s) {', '.join(map(str, continued))} are of the continued epochs, "
            "which trained on the validation images too: their validation accuracy means "
            f"nothing. Validate epochs up to {run_config.epochs}, or evaluate --split test"
        )
    data_splits, md5 = load_eval_data(run, data, resolve_device(device), (split,))
    x, y = data_splits[split]
    if len(y) == 0:
        raise ConfigError(
            f"{run}: the run keeps no {split} images (split_index {run_config.split_index}, "
            f"valid_fraction {run_config.valid_fraction}); evaluate another --split, e.g. test"
        )
    results = {}
    if echo:
        print("### Test or Validation ###")
    for epoch, path in zip(epochs, paths, strict=True):
        loss, acc = loss_and_accuracy(path, x, y, expected=run_config)
        results[str(epoch)] = {"checkpoint": path.name, "accuracy": acc, "loss": loss}
        if echo:
            print(f"Restored model parameters from {path}")
            # The seed's wording, with the split named: it printed this for validation too.
            print(f"Test accuracy: {acc:.4f} ({split} split)")
    report = {"split": split, "images": len(y), "data_md5": md5, "results": results}
    (run / f"eval-{split}.json").write_text(json.dumps(report, indent=2))
    return report


@torch.no_grad()
def predict(
    checkpoint: str | os.PathLike, images: list[str | os.PathLike], *, device: str = "auto"
) -> list[list[tuple[str, float]]]:
    """Class names and probabilities, most likely first, for each image file."""
    dev = resolve_device(device)
    restored = model_from_checkpoint(Path(checkpoint), dev)
    batch = np.stack([read_image(p, resize=True) for p in images]).transpose(0, 3, 1, 2)
    inputs = restored.normalize(torch.as_tensor(batch).to(dev))
    probs = torch.softmax(restored.model(inputs), dim=1).cpu()
    out = []
    for row in probs:
        order = torch.argsort(row, descending=True).tolist()
        out.append([(restored.label_names[i], float(row[i])) for i in order])
    return out
