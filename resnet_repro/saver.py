"""A run folder's writes, in the order that lets a kill anywhere lose nothing: the folder's
checks before a run starts in it, its lock, the records a segment begins with, and after each
epoch its history line, its numbered checkpoint when due, then ``last.ckpt``.

The training loop hands over an epoch's record and state; ``CheckpointSaver`` decides what is
written and in which order (as timm's ``CheckpointSaver`` does for its loop).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from resnet_repro.checkpoint import copy_checkpoint, load_checkpoint, save_checkpoint
from resnet_repro.config import ConfigError, TrainConfig
from resnet_repro.run_folder import (
    HISTORY,
    LOCK,
    append_history,
    append_segment,
    read_history,
    run_folder_lock,
    write_history,
)

LAST = "last.ckpt"


def newest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint a resume continues from: last.ckpt, unless a kill between an epoch's
    model-N.ckpt and its last.ckpt left model-N.ckpt newer (each is complete: both are written
    atomically, model-N.ckpt first). None when the folder holds neither."""
    last = folder / LAST
    numbered = {
        int(p.stem.removeprefix("model-")): p
        for p in folder.glob("model-*.ckpt")
        if p.stem.removeprefix("model-").isdigit()
    }
    last_epoch = int(load_checkpoint(last)["epoch"]) if last.exists() else -1
    if numbered and max(numbered) > last_epoch:
        return numbered[max(numbered)]
    return last if last.exists() else None


class CheckpointSaver:
    """Writes one run folder for one training process.

    Args:
        folder: the run folder.
        checkpoint_every: a numbered checkpoint every this many epochs (and at the last).
        last_every: last.ckpt every this many epochs (and with each numbered checkpoint); a
            kill loses at most the epochs since.
        writes: whether this process writes files (rank 0 of a torchrun job alone does).
    """

    def __init__(
        self, folder: Path, *, checkpoint_every: int, last_every: int = 1, writes: bool = True
    ) -> None:
        self.folder = Path(folder)
        self.checkpoint_every = checkpoint_every
        self.last_every = last_every
        self.writes = writes
        self.saved_epoch: int | None = None  # the newest epoch a checkpoint holds

    @property
    def last(self) -> Path:
        return self.folder / LAST

    def locked(self, *, resume: bool) -> contextlib.AbstractContextManager[None]:
        """Check that the folder can take the run, create it, and hold its lock (the writing
        process alone): taken before any data is loaded, so a second process into a busy
        folder is told at once."""
        if resume and not self.folder.is_dir():
            raise ConfigError(
                f"--resume: {self.folder} does not exist; check the --out folder, or leave out "
                "--resume to start a new run there"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        return run_folder_lock(self.folder) if self.writes else contextlib.nullcontext()

    def resume_source(self) -> Path:
        """The checkpoint a resume continues from; an error naming the folder when none."""
        source = newest_checkpoint(self.folder)
        if source is None:
            raise ConfigError(
                f"--resume: {self.last} does not exist; check the --out folder, or leave out "
                "--resume to start a new run there"
            )
        return source

    def history_until(self, epoch: int) -> list[dict[str, Any]]:
        """The recorded epochs up to ``epoch`` (a resume redoes any later one)."""
        return [h for h in read_history(self.folder / HISTORY) if h["epoch"] <= epoch]

    def check_empty(self) -> None:
        """A new run never writes over what a user had: checkpoints, another run's records,
        or any other files. The writing process alone looks: the others would find the
        records it has begun to write."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.last.exists() or any(self.folder.glob("model-*.ckpt")):
            raise ConfigError(
                f"{self.folder} already holds checkpoints; pass --resume to continue it or "
                "choose another output folder"
            )
        held = sorted(p.name for p in self.folder.iterdir() if p.name != LOCK)
        if self.writes and held:
            shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
            raise ConfigError(
                f"{self.folder} already holds files ({shown}); a new run needs an empty or new "
                "folder: choose another --out"
            )

    def begin(
        self, history: list[dict[str, Any]], config: TrainConfig, segment: dict[str, Any]
    ) -> None:
        """A segment's first writes: the history it continues, the config, its provenance."""
        if not self.writes:
            return
        write_history(self.folder / HISTORY, history)
        config.save(self.folder / "config.yaml")
        append_segment(self.folder, segment)

    def save_epoch(
        self, record: dict[str, Any], state: Callable[[], dict[str, Any]], *, final: bool
    ) -> bool:
        """Record an epoch: its history line, then its numbered checkpoint when due, then
        last.ckpt. A kill between any two leaves last.ckpt at the previous epoch, and the
        resume redoes this epoch, rewriting the history line and the epoch's checkpoint
        (bitwise the same), so none is lost. Returns whether a numbered checkpoint was
        written."""
        epoch = record["epoch"]
        append_history(self.folder / HISTORY, record)
        numbered = epoch % self.checkpoint_every == 0 or final
        if numbered:
            path = self.folder / f"model-{epoch}.ckpt"
            save_checkpoint(path, state())
            self.saved_epoch = epoch  # a resume continues from it (newest_checkpoint)
            copy_checkpoint(path, self.last)  # the same bytes, without pickling them again
        elif epoch % self.last_every == 0:
            save_checkpoint(self.last, state())
            self.saved_epoch = epoch
        return numbered
