"""Checkpoint files and the training state in them: written atomically, read without ever
running code, and checked against the run that wants to continue them: ``decide_resume`` says
whether a checkpoint continues, refuses or restarts a run, ``check_epochs`` refuses a resume
that would record its epochs otherwise.

A checkpoint is a dict of tensors and plain Python values (model and optimizer
state, epoch, global step, generator states, config, package version, code digest, data md5,
device type). ``save_checkpoint``
writes it to a temporary file in the same folder, fsyncs it and moves it into place with
``os.replace``, so a crash or a full disk leaves the previous file intact. ``load_checkpoint``
uses ``torch.load(weights_only=True)``, which refuses anything but tensors and plain values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from resnet_repro.atomic import write_atomic
from resnet_repro.config import ConfigError, TrainConfig, fields_with_role, flag

if TYPE_CHECKING:  # torch is imported where a checkpoint is read or written, so that the
    import torch  # command line's --help and fetch start without it

PACKAGE_DIR = Path(__file__).resolve().parent


class CheckpointError(Exception):
    """A checkpoint cannot be read or does not fit the run; the message names the file."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: the previous file stays intact on any error,
    and a failed write (a full disk: torch reports it as OSError or RuntimeError) is one
    CheckpointError naming the file."""
    import torch

    _write_checkpoint(path, lambda f: torch.save(state, f))


def copy_checkpoint(source: Path, path: Path) -> None:
    """Copy the checkpoint ``source`` to ``path``, atomically as ``save_checkpoint``."""
    with open(source, "rb") as src:
        _write_checkpoint(path, lambda f: shutil.copyfileobj(src, f))


def _write_checkpoint(path: Path, write: Callable[[BinaryIO], object]) -> None:
    try:
        write_atomic(path, write)
    except (OSError, RuntimeError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        kept = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} written"
        raise CheckpointError(
            f"{path}: cannot be written ({reason}); {kept}. Free disk space, then rerun with "
            "--resume"
        ) from e


def weights_digest(path: Path) -> str:
    """sha256 over a checkpoint's model tensors (names and bytes, in name order): equal digests
    mean bitwise-equal weights, which is how two runs of one seed are compared."""
    state = load_checkpoint(path)["model"]
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode() + state[name].cpu().numpy().tobytes())
    return digest.hexdigest()


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The state saved at ``path``, tensors mapped to ``map_location``; CheckpointError naming
    the file when it is missing, unreadable or not a checkpoint of this program."""
    import torch

    if path.is_dir():
        held = sorted(p.name for p in path.glob("*.ckpt"))
        raise CheckpointError(
            f"{path} is a folder; give one of its checkpoints ({', '.join(held[:4])}"
            f"{', ...' if len(held) > 4 else ''})"
            if held
            else f"{path} is a folder holding no checkpoint (*.ckpt); give a checkpoint file"
        )
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, ...: all mean "not a checkpoint"
        raise CheckpointError(f"{path}: not a readable checkpoint ({_reason(path, e)})") from e
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{path}: not a resnet_repro checkpoint (no model or config)")
    return state


def code_digest() -> str:
    """sha256 over this package's source files: the code a checkpoint was trained with, so a
    pipeline stage continues an interrupted run only with the same code."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def check_architecture(
    state: dict[str, Any], config: TrainConfig, path: Path, *, resuming: bool = True
) -> None:
    """CheckpointError listing each architecture field where ``state`` and ``config`` differ,
    with what to do: for a resume, the network options that continue the checkpoint's run;
    for an evaluation, that the run folder's config.yaml and its checkpoint disagree."""
    # A field a checkpoint predates has the value every run then had: its default (init he).
    saved = {**dataclasses.asdict(TrainConfig()), **state["config"]}
    differ = [k for k in config.architecture_fields() if saved[k] != getattr(config, k)]
    diff = [f"{k} {saved[k]!r} (checkpoint) vs {getattr(config, k)!r} (run)" for k in differ]
    if not diff:
        return
    if resuming:
        options = " ".join(option(k, saved[k]) for k in differ)
        advice = f"resume with {options} to continue it, or train into another --out"
    else:
        advice = (
            f"{path.parent / 'config.yaml'} does not describe this checkpoint's network; put the "
            "run folder's own config.yaml back, or evaluate the checkpoint with predict"
        )
    raise CheckpointError(
        f"{path}: checkpoint of another architecture: {'; '.join(diff)}. To go on, {advice}"
    )


def option(name: str, value: Any) -> str:
    """The command-line option that sets field ``name`` to ``value``."""
    if isinstance(value, bool):
        return flag(name) if value else f"--no-{name.replace('_', '-')}"
    return f"{flag(name)} {value}"


def check_device_type(state: dict[str, Any], device_type: str, path: Path) -> None:
    """CPU and CUDA generators are different random streams: a run resumes on the device type
    that wrote its checkpoint, or not at all."""
    saved = state.get("device_type", "cpu")
    if saved != device_type:
        raise CheckpointError(
            f"{path}: written by a run on {saved}, but this run is on {device_type}; the "
            f"augmentation's random stream differs between device types, so the run cannot "
            f"continue bitwise here. Resume with --device {saved}, or start a new run in "
            "another folder"
        )


def _reason(path: Path, error: Exception) -> str:
    """One line on why torch could not load ``path``, without torch's advice to load it unsafely
    (this program never does: a checkpoint holds tensors and plain values only)."""
    if path.stat().st_size == 0:
        return "the file is empty"
    text = str(error)
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0]
        return f"it holds something other than tensors and plain values: {detail}"
    if text.startswith("Weights only load failed"):
        # The first paragraph is torch's advice to load unsafely; the reason comes after it.
        paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
        detail = paragraphs[1].splitlines()[0] if len(paragraphs) > 1 else "refused by torch"
        return f"it holds something other than tensors and plain values: {detail}"
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


# Config fields a resume may change without changing the experiment: where and how fast it
# runs, not what it computes. Its length too, where the schedule does not depend on it. Each
# field's role is in its metadata (config.ROLES).
RESUME_MAY_CHANGE = fields_with_role("runtime")
LENGTH_FIELDS = fields_with_role("length")
LENGTH_FREE_SCHEDULES = ("constant", "multistep")


@dataclasses.dataclass(frozen=True)
class ResumePoint:
    """The checkpoint a run continues from, loaded once: its ``state``, or the ``error`` that
    kept it from loading."""

    path: Path
    state: dict[str, Any] | None = None
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class Resume:
    """What a resume point means for a run: ``continue``, ``refuse`` (the experiment would
    change: ``changes`` says how) or ``restart`` (``reason`` says why the folder's run cannot be
    continued). ``free`` lists the changes a resume may make (where and how fast it runs)."""

    verb: Literal["continue", "refuse", "restart"]
    changes: tuple[str, ...] = ()
    free: tuple[str, ...] = ()
    reason: str = ""


def decide_resume(
    point: ResumePoint | None, config: TrainConfig, data_md5: str, code: str, *, exact: bool
) -> Resume:
    """Whether the run of ``config`` (on data ``data_md5``, code digest ``code``) continues the
    checkpoint at ``point``. With ``exact`` (a DVC stage, which re-runs because something
    changed) any difference restarts; otherwise a change of the experiment (config or data) is
    refused and a change of where or how fast it runs is a ``continue`` that lists it."""
    if point is None:
        return Resume("restart", reason="it holds no checkpoint")
    if point.state is None:
        return Resume("restart", reason=f"its {point.path.name} is unreadable ({point.error})")
    saved = point.state
    if not isinstance(saved.get("config"), dict):
        return Resume("restart", reason=f"its {point.path.name} records no config")
    free = RESUME_MAY_CHANGE
    if saved["config"].get("schedule") in LENGTH_FREE_SCHEDULES:
        free += LENGTH_FIELDS
    experiment, benign = [], []
    for k, v in config.to_dict().items():
        if saved["config"].get(k) != v:
            (benign if k in free else experiment).append(f"{k} {saved['config'].get(k)!r} -> {v!r}")
    if saved.get("data_md5") not in (None, data_md5):
        experiment.append(f"data md5 {saved['data_md5']} -> {data_md5}")
    if exact:
        changed = [
            name
            for name, differs in (
                ("config", saved["config"] != config.to_dict()),
                ("code", saved.get("code_digest") != code),
                ("data", saved.get("data_md5") != data_md5),
            )
            if differs
        ]
        if changed:
            reason = f"it was trained with another {' and '.join(changed)}"
            return Resume("restart", tuple(experiment), tuple(benign), reason)
    return Resume("refuse" if experiment else "continue", tuple(experiment), tuple(benign))


def check_epochs(epoch: int, saved_epochs: int, config: TrainConfig, path: Path) -> None:
    """A resume may not shorten a run below the epoch it is at (it would train nothing and
    record a shorter run), nor move ``epochs`` across the checkpoint of a run with continued
    epochs: an epoch trained on the training split would be recorded as a continued one,
    or a continued one (trained on the validation images too) as a training epoch."""
    if epoch > config.last_epoch:
        raise ConfigError(
            f"{path.parent} is at epoch {epoch}: {config.epochs} epochs (and "
            f"{config.continue_epochs} continued) would train nothing and record a "
            f"shorter run; give --epochs {epoch - config.continue_epochs} or more"
        )
    if not config.continue_epochs or config.epochs == saved_epochs:
        return
    if epoch > saved_epochs or config.epochs < epoch:
        phase = "continued" if epoch > saved_epochs else "training"
        raise CheckpointError(
            f"{path}: epoch {epoch} was trained as a {phase} epoch ({saved_epochs} "
            f"training epochs, then the continued ones); --epochs {config.epochs} would "
            f"record it otherwise. Resume with --epochs {saved_epochs}"
            + ("" if phase == "continued" else f" (or {epoch} or more)")
        )
