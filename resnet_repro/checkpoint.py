"""Checkpoint files: written atomically, read without ever running code.

A checkpoint is a dict of tensors and plain Python values (model, optimizer and scheduler
state, epoch, global step, generator states, config, package version). ``save_checkpoint``
writes it to a temporary file in the same folder, fsyncs it and moves it into place with
``os.replace``, so a crash or a full disk leaves the previous file intact. ``load_checkpoint``
uses ``torch.load(weights_only=True)``, which refuses anything but tensors and plain values.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from resnet_repro.atomic import write_atomic


class CheckpointError(Exception):
    """A checkpoint cannot be read or does not fit the run; the message names the file."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    write_atomic(path, lambda f: torch.save(state, f))


def weights_digest(path: Path) -> str:
    """sha256 over a checkpoint's model tensors (names and bytes, in name order): equal digests
    mean bitwise-equal weights, which is how two runs of one seed are compared."""
    state = load_checkpoint(path)["model"]
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode() + state[name].cpu().numpy().tobytes())
    return digest.hexdigest()


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, ...: all mean "not a checkpoint"
        raise CheckpointError(f"{path}: not a readable checkpoint ({e})") from e
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{path}: not a resnet_repro checkpoint (no model or config)")
    return state
