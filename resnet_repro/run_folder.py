"""A run folder, its one owner: ``RunFolder`` holds its lock, loads the checkpoint a resume
continues from (once), and writes the folder in the order that lets a kill anywhere lose
nothing (whether that checkpoint continues the run is ``checkpoint.decide_resume``'s call).

What the folder holds: ``model-N.ckpt`` and ``last.ckpt``, ``config.yaml`` (the resolved
config), ``provenance.json`` (one record per training segment: code, machine, data),
``history.jsonl`` (one line per epoch) and ``.lock`` (held while a process trains into it).
After each epoch its history line is written, then its numbered checkpoint when due, then
``last.ckpt`` (as timm's ``CheckpointSaver`` does for its loop).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_repro import __version__, kernels
from resnet_repro.atomic import write_bytes_atomic
from resnet_repro.checkpoint import (
    PACKAGE_DIR,
    CheckpointError,
    ResumePoint,
    copy_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from resnet_repro.config import ConfigError, TrainConfig

if TYPE_CHECKING:
    import torch

LAST = "last.ckpt"
PROVENANCE = "provenance.json"
HISTORY = "history.jsonl"
LOCK = ".lock"


class RunFolderError(Exception):
    """A run folder's file cannot be read; the message names it and what to do."""


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], capture_output=True, text=True, check=True, cwd=cwd, timeout=30
    ).stdout.strip()


def code_version(package_dir: Path = PACKAGE_DIR) -> dict[str, Any]:
    """The git commit of the code that runs, and whether it differs from that commit.

    Only a package whose files the repository tracks is attributed to a commit: a copy of the
    package inside another repository is not that repository's code. Otherwise the commit is
    None and ``reason`` says why."""
    try:
        top = Path(_git("rev-parse", "--show-toplevel", cwd=package_dir))
        tracked = _git("ls-files", "--", str(package_dir), cwd=top)
        if not tracked:
            return {
                "commit": None,
                "dirty": None,
                "reason": f"{package_dir} is not tracked by the git repository at {top}",
            }
        commit = _git("rev-parse", "HEAD", cwd=top)
        dirty = bool(_git("status", "--porcelain", "--", str(package_dir), cwd=top))
    except (OSError, subprocess.SubprocessError) as e:
        reason = getattr(e, "stderr", None) or str(e)
        return {"commit": None, "dirty": None, "reason": f"not a git checkout ({reason.strip()})"}
    return {"commit": commit, "dirty": dirty, "reason": None}


def machine(device: torch.device) -> dict[str, Any]:
    """The software and hardware a segment ran on."""
    import torch

    return {
        "package_version": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        # The determinism in force while the segment trained (config.deterministic sets it).
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "cpu_kernels": kernels.describe(),
    }


def read_provenance(folder: Path) -> list[dict[str, Any]]:
    """The segments recorded so far (none for a new folder)."""
    path = folder / PROVENANCE
    if not path.exists():
        return []
    try:
        segments = json.loads(path.read_text())["segments"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RunFolderError(
            f"{path}: not a provenance record of this program ({e}); move it away to continue"
        ) from e
    return list(segments)


def append_segment(folder: Path, segment: dict[str, Any]) -> None:
    """Add one training segment's record to ``provenance.json``; earlier ones stay as written."""
    segments = [*read_provenance(folder), segment]
    text = json.dumps({"segments": segments}, indent=2)
    write_bytes_atomic(folder / PROVENANCE, text.encode())


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@contextlib.contextmanager
def run_folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` while a run writes it: a second training process
    into the same folder would interleave its history and checkpoints with the first's. The
    operating system releases the lock when the process dies, so a killed run holds none (its
    ``.lock`` file stays, naming the last holder, and blocks nothing)."""
    with open(folder / LOCK, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise ConfigError(
                f"{folder} is being written by another training process (pid {holder}); wait "
                "for it to finish, or train into another --out folder"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        yield


def read_history(path: Path) -> list[dict[str, Any]]:
    """The epochs recorded in ``history.jsonl``. A torn last line (a kill mid-write) is dropped:
    that epoch's checkpoint was not written yet, so a resume redoes it."""
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    records = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError as e:
            if i == len(lines):
                break
            raise RunFolderError(
                f"{path}: line {i} is not JSON ({e}); the history is damaged. Remove the line "
                "(its epoch will be missing from the curves) or start the run in a new folder"
            ) from e
    return records


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(h) + "\n" for h in history)
    write_bytes_atomic(path, text.encode())


def append_history(path: Path, record: dict[str, Any]) -> None:
    """One epoch's line, on disk before the epoch's checkpoint is written."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


class RunFolder:
    """One run folder, for one training process: its checks, lock, resume point and writes.

    Args:
        path: the folder.
        checkpoint_every: a numbered checkpoint every this many epochs (and at the last).
        last_every: last.ckpt every this many epochs (and with each numbered checkpoint); a
            kill loses at most the epochs since.
        writes: whether this process writes files (rank 0 of a torchrun job alone does).
    """

    def __init__(
        self, path: Path, *, checkpoint_every: int, last_every: int = 1, writes: bool = True
    ) -> None:
        self.path = Path(path)
        self.checkpoint_every = checkpoint_every
        self.last_every = last_every
        self.writes = writes
        self.held = False
        self.saved_epoch: int | None = None  # the newest epoch a checkpoint holds

    @classmethod
    def of_run(cls, path: Path, config: TrainConfig, *, writes: bool = True) -> RunFolder:
        """The folder of a run of ``config``. A rehearsal writes last.ckpt only where a numbered
        checkpoint is due: a resume is all that reads it, and pickling a 164-layer state every
        step was most of a rehearsal's time."""
        every = config.checkpoint_every
        return cls(
            path,
            checkpoint_every=every,
            last_every=every if config.is_rehearsal else 1,
            writes=writes,
        )

    @property
    def last(self) -> Path:
        return self.path / LAST

    @contextlib.contextmanager
    def locked(self, *, resume: bool = False) -> Iterator[RunFolder]:
        """Check that the folder can take the run, create it, and hold its lock (the writing
        process alone) until the block ends; taken before any data is loaded, so a second
        process into a busy folder is told at once. Held already, it is held on."""
        if self.held:
            yield self
            return
        if resume and not self.path.is_dir():
            raise ConfigError(
                f"--resume: {self.path} does not exist; check the --out folder, or leave out "
                "--resume to start a new run there"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        with run_folder_lock(self.path) if self.writes else contextlib.nullcontext():
            self.held = True
            try:
                yield self
            finally:
                self.held = False

    def resume_point(self) -> ResumePoint | None:
        """The checkpoint a resume continues from, loaded: last.ckpt, unless a kill between an
        epoch's model-N.ckpt and its last.ckpt left model-N.ckpt newer (each is complete: both
        are written atomically, model-N.ckpt first). None when the folder holds neither."""
        numbered = {
            int(p.stem.removeprefix("model-")): p
            for p in self.path.glob("model-*.ckpt")
            if p.stem.removeprefix("model-").isdigit()
        }
        point = self._load(self.last) if self.last.exists() else None
        if point is not None and point.state is None:
            return point
        if numbered and max(numbered) > (int(point.state["epoch"]) if point else -1):
            return self._load(numbered[max(numbered)])
        return point

    @staticmethod
    def _load(path: Path) -> ResumePoint:
        try:
            return ResumePoint(path, load_checkpoint(path))
        except CheckpointError as e:
            return ResumePoint(path, error=str(e))

    def clear(self, reason: str) -> None:
        """Remove the folder's files (the lock it holds stays), saying why."""
        print(f"{self.path}: starting afresh, since {reason}")
        for p in self.path.iterdir():
            if p.name != LOCK:
                shutil.rmtree(p) if p.is_dir() else p.unlink()

    def history_until(self, epoch: int) -> list[dict[str, Any]]:
        """The recorded epochs up to ``epoch`` (a resume redoes any later one)."""
        return [h for h in read_history(self.path / HISTORY) if h["epoch"] <= epoch]

    def check_empty(self) -> None:
        """A new run never writes over what a user had: checkpoints, another run's records,
        or any other files. The writing process alone looks: the others would find the
        records it has begun to write."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.last.exists() or any(self.path.glob("model-*.ckpt")):
            raise ConfigError(
                f"{self.path} already holds checkpoints; pass --resume to continue it or "
                "choose another output folder"
            )
        held = sorted(p.name for p in self.path.iterdir() if p.name != LOCK)
        if self.writes and held:
            shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
            raise ConfigError(
                f"{self.path} already holds files ({shown}); a new run needs an empty or new "
                "folder: choose another --out"
            )

    def begin(
        self, history: list[dict[str, Any]], config: TrainConfig, segment: dict[str, Any]
    ) -> None:
        """A segment's first writes: the history it continues, the config, its provenance."""
        if not self.writes:
            return
        write_history(self.path / HISTORY, history)
        config.save(self.path / "config.yaml")
        append_segment(self.path, segment)

    def save_epoch(
        self, record: dict[str, Any], state: Callable[[], dict[str, Any]], *, final: bool
    ) -> bool:
        """Record an epoch: its history line, then its numbered checkpoint when due, then
        last.ckpt. A kill between any two leaves last.ckpt at the previous epoch, and the
        resume redoes this epoch, rewriting the history line and the epoch's checkpoint
        (bitwise the same), so none is lost. Returns whether a numbered checkpoint was
        written."""
        epoch = record["epoch"]
        append_history(self.path / HISTORY, record)
        numbered = epoch % self.checkpoint_every == 0 or final
        if numbered:
            path = self.path / f"model-{epoch}.ckpt"
            save_checkpoint(path, state())
            self.saved_epoch = epoch  # a resume continues from it (resume_point)
            copy_checkpoint(path, self.last)  # the same bytes, without pickling them again
        elif epoch % self.last_every == 0:
            save_checkpoint(self.last, state())
            self.saved_epoch = epoch
        return numbered
