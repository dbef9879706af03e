"""What a run folder holds besides checkpoints, and how it is written: ``config.yaml`` (the
resolved config), ``provenance.json`` (one record per training segment: code, machine, data),
``history.jsonl`` (one line per epoch) and ``.lock`` (held while a process trains into it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_repro import __version__, kernels
from resnet_repro.atomic import write_bytes_atomic
from resnet_repro.config import ConfigError

if TYPE_CHECKING:
    import torch

PACKAGE_DIR = Path(__file__).resolve().parent
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
