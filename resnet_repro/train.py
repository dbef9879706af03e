"""The training loop of one run: the model, its optimizer and learning rate, one epoch's steps,
the per-epoch validation, and what a resume may change.

Its rooms: ``loader.py`` holds the data on the device and draws the batches (order,
augmentation, normalization, each process's share, their generators); ``run_folder.py`` holds
the run folder's lock, its resume point and its writes in their order; ``optim.py`` makes
the optimizer and sets its lr; ``schedule.get_lr`` gives the lr of each step. Progress lines go
through ``logging`` (logger ``resnet_repro.train``, rank 0 only); the command line prints them.

Design choices:

* One ``seed`` decides everything random, through three generators derived from it: model
  init (here), data order and augmentation (the loader). The global RNG is never used, and
  every generator state goes into the checkpoint, so a resumed run continues the same streams.
* The loss is checked for NaN/inf on the device every step and read back once per epoch, so
  the loop never waits on the device mid-epoch.
* BN groups (``bn_group_images``, ``loader.BatchGeometry``): a step is its micro-batches, each
  forwarded and backpropagated on its own with the gradients accumulated, then one optimizer
  step; the running statistics move once per group. It costs what a step of plain BN costs
  (benchmarks/test_bench_train.py).
* ``continue_epochs``: after ``epochs`` epochs on the training split, the run goes on with the
  same model, optimizer state and random streams on every training image (the training and
  validation splits), as the seed's skeleton did; those epochs are not validated.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from resnet_repro import __version__
from resnet_repro.checkpoint import (
    CheckpointError,
    ResumePoint,
    check_architecture,
    check_device_type,
    check_epochs,
    code_digest,
    decide_resume,
)
from resnet_repro.config import ConfigError, TrainConfig
from resnet_repro.data import Splits, load_splits
from resnet_repro.distributed import Distributed
from resnet_repro.evaluate import evaluate_model, recorded_data
from resnet_repro.loader import BatchGeometry, DeviceLoader, stream_seed
from resnet_repro.optim import hold_lr_in_tensors, make_optimizer, optimizer_flags, set_lr
from resnet_repro.run_folder import RunFolder, code_version, machine, now
from resnet_repro.runtime import (
    CompiledForBatch,
    autocast,
    build_model,
    deterministic_kernels,
    resolve_device,
)
from resnet_repro.schedule import epoch_steps, get_lr, total_steps
from resnet_repro.step_graph import StepGraph

log = logging.getLogger(__name__)

ESTIMATE_AFTER = 10  # steps timed before the expected duration of a CPU run is printed


def cpu_estimate(per_step: float, steps: int, batch_size: int) -> str:
    """The line that says how long a run of ``steps`` steps takes on this CPU."""
    total = per_step * steps
    duration = f"{total / 3600:.1f} h" if total >= 3600 else f"{total / 60:.1f} min"
    return (
        f"Expected duration on CPU: {duration} for {steps} steps ({batch_size / per_step:.0f} "
        f"images/s over the first {ESTIMATE_AFTER} steps)."
    )


class EpochMeter:
    """One epoch's sums, kept on the device and read back once, at its end (the loop never
    waits on the device mid-epoch): the loss, the correct predictions, the images, the last
    step's loss, and the first step whose loss was NaN/inf."""

    def __init__(self, device: torch.device, global_step: int) -> None:
        self.loss_sum = torch.zeros((), device=device)
        self.last_sum, self.last_seen = torch.zeros((), device=device), 0
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.step = torch.full((), global_step, device=device, dtype=torch.long)
        self.bad_step = torch.full((), -1, device=device, dtype=torch.long)
        self.seen = 0

    def add(self, loss: Tensor, logits: Tensor, y: Tensor) -> None:
        self.step += 1
        self.bad_step = torch.where(
            (self.bad_step < 0) & ~torch.isfinite(loss), self.step, self.bad_step
        )
        self.last_sum, self.last_seen = loss.detach().float() * len(y), len(y)
        self.loss_sum += self.last_sum
        self.correct += (logits.argmax(1) == y).sum()
        self.seen += len(y)

    def totals(self, dist: Distributed) -> tuple[float, float, int, float, int]:
        """All processes' mean loss, accuracy, images, last step's loss, and the first bad
        step (-1: none)."""
        device = self.loss_sum.device
        totals = torch.stack(
            [
                self.loss_sum,
                self.correct.to(self.loss_sum.dtype),
                torch.tensor(float(self.seen), device=device),
                self.last_sum,
                torch.tensor(float(self.last_seen), device=device),
            ]
        )
        loss_sum, correct, total, last_sum, last_seen = dist.sum(totals)
        bad_step = int(dist.max(self.bad_step))
        mean_loss, accuracy = float(loss_sum) / float(total), float(correct) / float(total)
        return mean_loss, accuracy, int(total), float(last_sum) / float(last_seen), bad_step


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became NaN); the last good checkpoint is kept."""

    @classmethod
    def not_finite(cls, epoch: int, step: int, last: Path, saved_epoch: int) -> TrainingError:
        return cls(
            f"loss became NaN/inf at epoch {epoch}, step {step}; the last good checkpoint is "
            f"{last} (epoch {saved_epoch})"
            if saved_epoch
            else f"loss became NaN/inf at epoch {epoch}, step {step}, before any checkpoint "
            "was written; lower --lr or check the data"
        )


class TrainingInterrupted(TrainingError):
    """The user stopped the run (Ctrl-C); the message says where to resume from."""

    @classmethod
    def of(cls, folder: RunFolder) -> TrainingInterrupted:
        saved, out = folder.saved_epoch, folder.path
        return cls(
            f"interrupted; {out} holds a checkpoint of epoch {saved}: rerun with --resume "
            f"--out {out} to continue"
            if saved is not None
            else "interrupted before the first epoch ended; nothing was saved"
        )


class Trainer:
    """Trains one run described by ``config`` into ``folder``.

    Args:
        config: the run's settings.
        folder: the run folder (a path: its ``RunFolder``); created if missing.
        splits: the data, if already loaded (otherwise loaded from ``config.data``).
        progress: show tqdm bars (None: only when stderr is a terminal).
        dist: this process's place in a torchrun job (default: from the environment).
    """

    def __init__(
        self,
        config: TrainConfig,
        folder: RunFolder | str | os.PathLike,
        *,
        splits: Splits | None = None,
        progress: bool | None = None,
        dist: Distributed | None = None,
    ) -> None:
        self.config = config
        self.dist = dist if dist is not None else Distributed.from_env()
        self.folder = (
            folder
            if isinstance(folder, RunFolder)
            else RunFolder.of_run(Path(folder), config, writes=self.dist.is_main)
        )
        self.device = self.dist.device(resolve_device(config.device))
        # Made first: it refuses a device without CUDA graphs before any data is loaded.
        self.step_graph = StepGraph.for_run(self._step, config, self.device, self.dist.world_size)
        # None lets tqdm decide: quiet when stderr is not a terminal.
        self.quiet = None if progress is None else not progress
        self.splits = splits if splits is not None else load_splits(config)
        self.loader = DeviceLoader(self.splits, config, self.device, self.dist)

        self.model, self.train_net, self.eval_net, self.ddp = training_nets(
            config, self.device, self.dist, self.loader.geometry
        )
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.optimizer = make_optimizer(
            config, self.model.parameters(), self.device, captured=config.cuda_graph
        )
        # The code this process imported: hashed once, recorded in every checkpoint.
        self.code_digest = code_digest()
        self.total_steps = total_steps(
            config, self.loader.n_train, self.dist.world_size, n_continue=self.loader.n_all
        )
        self.epoch = self.global_step = 0

    # -- the loop ----------------------------------------------------------------------------

    def fit(
        self, point: ResumePoint | None = None, *, allow_changes: bool = False
    ) -> list[dict[str, Any]]:
        """Train to ``config.last_epoch`` (or ``max_iters``) in the run folder, held while it
        trains (``train`` takes it before loading the data); returns the history.

        Args:
            point: the checkpoint to continue (``RunFolder.resume_point``); None: a new run.
            allow_changes: let a resume change the experiment's config (recorded).
        """
        with self.folder.locked(), deterministic_kernels(self.config.deterministic):
            try:
                return self._fit(point, allow_changes=allow_changes)
            except KeyboardInterrupt:
                raise TrainingInterrupted.of(self.folder) from None

    def _finished(self) -> bool:
        return self.epoch >= self.config.last_epoch or self.global_step >= self.total_steps

    def _fit(self, point: ResumePoint | None, *, allow_changes: bool) -> list[dict[str, Any]]:
        changes, history = [], []
        if point is None:
            self.folder.check_empty()
        else:
            changes = restore(self, point, allow_changes=allow_changes)
            history, out = self.folder.history_until(self.epoch), self.folder.path
            if self._finished():
                self._say(
                    f"{out} is complete (epoch {self.epoch} of {self.config.last_epoch}, step "
                    f"{self.global_step}): nothing to train."
                )
                return history
            self._say(f"Resuming {out} from epoch {self.epoch} (step {self.global_step}).")
        self.folder.begin(history, self.config, segment(self, changes))
        self._say("### Training... ###")
        state = functools.partial(training_state, self)  # called only where a checkpoint is due
        while not self._finished():
            record = self._next_epoch()
            if record is None:  # a process that writes nothing
                continue
            history.append(record)
            if self.folder.save_epoch(record, state, final=self._finished()):
                self._say("Checkpoint has been created.")
        return history

    def _next_epoch(self) -> dict[str, Any] | None:
        """Train the next epoch and validate it; returns its history record (None in a
        process that writes nothing)."""
        epoch = self.epoch + 1
        continued = self.loader.continued(epoch)
        if continued and epoch == self.config.epochs + 1:
            self._say(f"### Training... ### (continued on all {self.loader.n_all} training images)")
        per_epoch = epoch_steps(self.config, self.loader.images(epoch), self.dist.world_size)
        steps = min(per_epoch, self.total_steps - self.global_step)
        start = time.perf_counter()
        train_loss, train_acc, images, last_batch_loss = self.train_epoch(epoch, steps)
        train_seconds = time.perf_counter() - start
        self.epoch = epoch
        if not self.folder.writes:
            return None
        # The continuation trains on the validation images: validating them means nothing.
        validated = len(self.loader.y_valid) and not continued
        valid = self.evaluate(self.loader.x_valid, self.loader.y_valid) if validated else None
        seconds = time.perf_counter() - start
        # The seed's line, whose "Loss" was its epoch's last mini-batch loss.
        self._say(f"Epoch {epoch} Loss {last_batch_loss:.6f} Duration {seconds:.3f} seconds.")
        return {
            "epoch": epoch,
            "step": self.global_step,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "last_batch_loss": last_batch_loss,
            "valid_loss": valid[0] if valid else None,
            "valid_acc": valid[1] if valid else None,
            # The learning rate the next step will take.
            "next_lr": get_lr(self.config, self.global_step, self.total_steps),
            "seconds": seconds,  # the whole epoch, validation included
            "train_seconds": train_seconds,
            "images_per_s": images / train_seconds,  # training only
        }

    def train_epoch(self, epoch: int, steps: int) -> tuple[float, float, int, float]:
        """``steps`` optimizer steps of epoch ``epoch`` (the loader's batches of its images);
        returns the mean loss, the accuracy, the number of images seen and the last step's
        loss (what the seed logged as an epoch's "Loss")."""
        self.model.train()
        meter = EpochMeter(self.device, self.global_step)
        bar = tqdm(total=steps, desc=f"epoch {epoch}", leave=False, disable=self.quiet)
        started = time.perf_counter()
        for b, (x, y, loss_weight) in enumerate(self.loader.batches(epoch, steps)):
            if b == ESTIMATE_AFTER == self.global_step and self.device.type == "cpu":
                # A full-size grid on a CPU is days of work: better known now than in hours.
                per_step = (time.perf_counter() - started) / ESTIMATE_AFTER
                self._say(cpu_estimate(per_step, self.total_steps, self.config.batch_size))
            loss, logits = self.train_step(x, y, loss_weight)
            meter.add(loss, logits, y)
            bar.update()
        bar.close()
        mean_loss, accuracy, images, last_loss, bad_step = meter.totals(self.dist)
        if bad_step >= 0:
            raise TrainingError.not_finite(epoch, bad_step, self.folder.last, self.epoch)
        return mean_loss, accuracy, images, last_loss

    def train_step(self, x: Tensor, y: Tensor, loss_weight: float = 1.0) -> tuple[Tensor, Tensor]:
        """The step at ``global_step``: its lr, then one optimizer step on the normalized batch
        (through the CUDA graph when ``cuda_graph``); returns the loss and the logits."""
        set_lr(self.optimizer, get_lr(self.config, self.global_step, self.total_steps))
        if self.step_graph is not None:
            loss, logits = self.step_graph(x, y)
        else:
            loss, logits = self._step(x, y, loss_weight)
        self.global_step += 1
        return loss, logits

    def _step(self, x: Tensor, y: Tensor, loss_weight: float = 1.0) -> tuple[Tensor, Tensor]:
        """One optimizer step on the normalized batch ``x``, its micro-batches (BN groups,
        ``BatchGeometry``) forwarded and backpropagated one at a time; returns the loss and the
        logits, detached. What a CUDA graph records, when ``cuda_graph`` is on."""
        self.optimizer.zero_grad(set_to_none=True)
        micro = list(self.loader.geometry.micro_batches(x, y, loss_weight))
        losses, logits = [], []
        for i, (xg, yg, weight) in enumerate(micro):
            # With DDP, the gradients are reduced once, in the last micro-batch's backward.
            sync = self.ddp is None or i == len(micro) - 1
            with contextlib.nullcontext() if sync else self.ddp.no_sync():
                with autocast(self.device, self.config.precision, cache=not self.config.cuda_graph):
                    out = self.train_net(xg)
                loss = self.loss_fn(out.float(), yg)
                (loss * weight if weight != 1.0 else loss).backward()
            losses.append(loss.detach())
            logits.append(out.detach())
        self.optimizer.step()
        if len(micro) == 1:
            return losses[0], logits[0]
        # The step's loss: each micro-batch's mean loss weighted by its share of the images.
        shares = [len(yg) / len(y) for _, yg, _ in micro]
        return sum(lg * share for lg, share in zip(losses, shares, strict=True)), torch.cat(logits)

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """Mean loss and accuracy of the current weights on uint8 images ``x``."""
        c, normalize = self.config, self.loader.normalize
        return evaluate_model(
            self.eval_net, x, y, normalize, c.eval_batch_size, c.precision, c.channels_last
        )

    def _say(self, line: str) -> None:
        # The seed's progress lines, once per job: rank 0 alone speaks.
        if self.dist.is_main:
            log.info(line)


def training_nets(
    config: TrainConfig, device: torch.device, dist: Distributed, geometry: BatchGeometry
) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module | None]:
    """The network of a run on ``device``, initialized from the run's seed, and the modules a
    training step and an evaluation call: (model, train, eval, ddp). With several torchrun
    ranks a step goes through DDP (``ddp``, else None); evaluation runs on rank 0 alone, so it
    must not go through DDP's collectives. With ``compile`` each is compiled for its one batch
    size: an evaluation batch, and a micro-batch of this process's share."""
    gen = torch.Generator().manual_seed(stream_seed(config.seed, "init"))
    model = build_model(config, generator=gen).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_net: nn.Module = model
    eval_net: nn.Module = model
    ddp = None
    if dist.world_size > 1:
        ddp = train_net = dist.wrap(model, device, sync_bn=config.sync_bn)
    if config.compile:
        shard = dist.shard(config.batch_size)
        micro = geometry.micro_batch(shard.stop - shard.start)
        mode = config.compile_mode
        eval_net = CompiledForBatch(eval_net, batch_size=config.eval_batch_size, mode=mode)
        train_net = CompiledForBatch(train_net, batch_size=micro, mode=mode)
    return model, train_net, eval_net, ddp


def training_state(trainer: Trainer) -> dict[str, Any]:
    """Everything a resume needs to continue bitwise, and what identifies the run."""
    return {
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "epoch": trainer.epoch,
        "global_step": trainer.global_step,
        "rng": trainer.loader.state(),
        "config": trainer.config.to_dict(),
        "normalization": trainer.loader.normalize.state(),
        "package_version": __version__,
        "code_digest": trainer.code_digest,
        "data_md5": trainer.splits.source_md5,
        "label_names": list(trainer.splits.label_names),
        "device_type": trainer.device.type,
    }


def restore(trainer: Trainer, point: ResumePoint, *, allow_changes: bool = False) -> list[str]:
    """Continue ``trainer`` from ``point``. Returns what differs from the run that wrote it;
    refuses a change of the experiment unless ``allow_changes``."""
    path, config = point.path, trainer.config
    if point.state is None:
        raise CheckpointError(point.error)
    state = point.state
    check_architecture(state, config, path)
    check_device_type(state, trainer.device.type, path)
    resume = decide_resume(
        point, config, trainer.splits.source_md5, trainer.code_digest, exact=False
    )
    if resume.verb == "refuse" and not allow_changes:
        raise CheckpointError(
            f"{path}: resuming would change the experiment: {'; '.join(resume.changes)}. "
            f"Resume with --config {path.parent / 'config.yaml'} to continue it unchanged, "
            "or pass --allow-changes to continue with these changes recorded in "
            "provenance.json"
        )
    try:
        trainer.model.load_state_dict(state["model"])
        optimizer = state["optimizer"]
        # This run's optimizer flags and a float lr, whichever run wrote the checkpoint
        # (torch takes both from the saved groups).
        flags = optimizer_flags(config.optimizer, trainer.device, captured=config.cuda_graph)
        for group in optimizer["param_groups"]:
            group.update(flags, lr=float(group["lr"]))
        trainer.optimizer.load_state_dict(optimizer)
        if config.cuda_graph:
            hold_lr_in_tensors(trainer.optimizer, trainer.device)
        trainer.loader.load_state(state["rng"])
    except (KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{path}: does not fit this run ({e})") from e
    trainer.epoch = int(state["epoch"])
    trainer.global_step = int(state["global_step"])
    check_epochs(trainer.epoch, int(state["config"].get("epochs", config.epochs)), config, path)
    trainer.folder.saved_epoch = trainer.epoch
    return [*resume.changes, *resume.free]


def segment(trainer: Trainer, changes: list[str]) -> dict[str, Any]:
    """provenance.json's record of this process's part of the run."""
    config = trainer.config
    return {
        "started": now(),
        "from_epoch": trainer.epoch,
        "from_step": trainer.global_step,
        "config_hash": config.config_hash(),
        "config_changes": changes,
        "code": code_version(),
        "code_digest": trainer.code_digest,
        "machine": machine(trainer.device),
        "data": str(config.data),
        "data_path": str(Path(config.data).resolve()),
        "data_md5": trainer.splits.source_md5,
        "world_size": trainer.dist.world_size,
    }


def train(
    config: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    allow_changes: bool = False,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Train one run into ``out_dir``; the library's one-call entry point. Takes the run
    folder's lock before anything else: a second process into a busy folder is refused
    before it loads any data.

    Args:
        config: the run's settings (e.g. from ``make_config``).
        out_dir: the run folder.
        resume: continue from its newest checkpoint (``last.ckpt``).
        allow_changes: let a resume change the experiment (recorded in provenance.json).
        **kwargs: passed to ``Trainer`` (``splits``, ``progress``, ``dist``).
    Returns:
        one record per epoch (as in ``history.jsonl``).
    """
    dist = kwargs.pop("dist", None) or Distributed.from_env()
    folder = RunFolder.of_run(Path(out_dir), config, writes=dist.is_main)
    with folder.locked(resume=resume):
        point = folder.resume_point() if resume else None
        if resume:
            if point is None:
                raise ConfigError(
                    f"--resume: {folder.last} does not exist; check the --out folder, or leave "
                    "out --resume to start a new run there"
                )
            if point.state is None:
                raise CheckpointError(point.error)
            # A foreign checkpoint fails before any data is loaded.
            check_architecture(point.state, config, point.path)
            if not Path(config.data).exists():
                # --data was given relative to the folder the run started in: find it here.
                config = dataclasses.replace(config, data=recorded_data(folder.path, config.data))
        trainer = Trainer(config, folder, dist=dist, **kwargs)
        return trainer.fit(point, allow_changes=allow_changes)
