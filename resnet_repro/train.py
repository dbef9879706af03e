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
    check_architecture,
    check_device_type,
    code_digest,
)
from resnet_repro.config import ConfigError, TrainConfig
from resnet_repro.data import Splits, load_splits
from resnet_repro.distributed import Distributed
from resnet_repro.evaluate import evaluate_model, recorded_data
from resnet_repro.loader import DeviceLoader, stream_seed
from resnet_repro.optim import hold_lr_in_tensors, make_optimizer, optimizer_flags, set_lr
from resnet_repro.run_folder import (
    ResumePoint,
    RunFolder,
    code_version,
    decide_resume,
    machine,
    now,
)
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


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became NaN); the last good checkpoint is kept."""


class TrainingInterrupted(TrainingError):
    """The user stopped the run (Ctrl-C); the message says where to resume from."""


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
        if config.cuda_graph and self.dist.world_size > 1:
            raise ConfigError(
                f"cuda_graph runs in one process, not in {self.dist.world_size} torchrun ranks: "
                "leave out --cuda-graph, or run one process per GPU"
            )
        self.device = self.dist.device(resolve_device(config.device))
        # Made first: it refuses a device without CUDA graphs before any data is loaded.
        self.step_graph = (
            StepGraph(
                self._step,
                batch_size=config.batch_size,
                device=self.device,
                channels_last=config.channels_last,
            )
            if config.cuda_graph
            else None
        )
        self.progress = progress
        self.splits = splits if splits is not None else load_splits(config)
        self.loader = DeviceLoader(self.splits, config, self.device, self.dist)
        self.geometry = self.loader.geometry

        gen = torch.Generator().manual_seed(stream_seed(config.seed, "init"))
        self.model = build_model(config, generator=gen).to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # Evaluation runs on rank 0 alone, so it must not go through DDP's collectives.
        self.eval_net: nn.Module = self.model
        self.train_net: nn.Module = self.model
        self.ddp: nn.Module | None = None
        if self.dist.world_size > 1:
            self.ddp = self.dist.wrap(self.model, self.device, sync_bn=config.sync_bn)
            self.train_net = self.ddp
        if config.compile:
            mode = config.compile_mode
            shard = self.dist.shard(config.batch_size)
            self.eval_net = CompiledForBatch(
                self.eval_net, batch_size=config.eval_batch_size, mode=mode
            )
            images = shard.stop - shard.start  # this process's share of a step
            self.train_net = CompiledForBatch(
                self.train_net, batch_size=self.geometry.micro_batch(images), mode=mode
            )
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.optimizer = make_optimizer(config, self.model.parameters(), self.device)
        if config.cuda_graph:
            hold_lr_in_tensors(self.optimizer, self.device)
        # The code this process imported: hashed once, recorded in every checkpoint.
        self.code_digest = code_digest()
        self.total_steps = total_steps(
            config, self.loader.n_train, self.dist.world_size, n_continue=self.loader.n_all
        )
        self.epoch = 0
        self.global_step = 0

    # -- checkpoints -------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything a resume needs to continue bitwise, and what identifies the run."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "rng": self.loader.state(),
            "config": self.config.to_dict(),
            "normalization": self.loader.normalize.state(),
            "package_version": __version__,
            "code_digest": self.code_digest,
            "data_md5": self.splits.source_md5,
            "label_names": list(self.splits.label_names),
            "device_type": self.device.type,
        }

    def restore(self, point: ResumePoint, *, allow_changes: bool = False) -> list[str]:
        """Continue from ``point``. Returns what differs from the run that wrote it; refuses a
        change of the experiment unless ``allow_changes``."""
        path = point.path
        if point.state is None:
            raise CheckpointError(point.error)
        state = point.state
        check_architecture(state, self.config, path)
        check_device_type(state, self.device.type, path)
        resume = decide_resume(
            point, self.config, self.splits.source_md5, self.code_digest, exact=False
        )
        if resume.verb == "refuse" and not allow_changes:
            raise CheckpointError(
                f"{path}: resuming would change the experiment: {'; '.join(resume.changes)}. "
                f"Resume with --config {path.parent / 'config.yaml'} to continue it unchanged, "
                "or pass --allow-changes to continue with these changes recorded in "
                "provenance.json"
            )
        try:
            self.model.load_state_dict(state["model"])
            optimizer = state["optimizer"]
            # This run's optimizer flags and a float lr, whichever run wrote the checkpoint
            # (torch takes both from the saved groups).
            for group in optimizer["param_groups"]:
                group.update(optimizer_flags(self.config, self.device), lr=float(group["lr"]))
            self.optimizer.load_state_dict(optimizer)
            if self.config.cuda_graph:
                hold_lr_in_tensors(self.optimizer, self.device)
            self.loader.load_state(state["rng"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"{path}: does not fit this run ({e})") from e
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.check_phase(int(state["config"].get("epochs", self.config.epochs)), path)
        self.folder.saved_epoch = self.epoch
        return [*resume.changes, *resume.free]

    def check_phase(self, saved_epochs: int, path: Path) -> None:
        """A resume may not move ``epochs`` across the checkpoint of a run with continued
        epochs: an epoch trained on the training split would be recorded as a continued one,
        or a continued one (trained on the validation images too) as a training epoch."""
        if not self.config.continue_epochs or self.config.epochs == saved_epochs:
            return
        if self.epoch > saved_epochs or self.config.epochs < self.epoch:
            phase = "continued" if self.epoch > saved_epochs else "training"
            raise CheckpointError(
                f"{path}: epoch {self.epoch} was trained as a {phase} epoch ({saved_epochs} "
                f"training epochs, then the continued ones); --epochs {self.config.epochs} would "
                f"record it otherwise. Resume with --epochs {saved_epochs}"
                + ("" if phase == "continued" else f" (or {self.epoch} or more)")
            )

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
                saved, out = self.folder.saved_epoch, self.folder.path
                raise TrainingInterrupted(
                    f"interrupted; {out} holds a checkpoint of epoch {saved}:"
                    f" rerun with --resume --out {out} to continue"
                    if saved is not None
                    else "interrupted before the first epoch ended; nothing was saved"
                ) from None

    def _finished(self) -> bool:
        return self.epoch >= self.config.last_epoch or self.global_step >= self.total_steps

    def _fit(self, point: ResumePoint | None, *, allow_changes: bool) -> list[dict[str, Any]]:
        folder, out = self.folder, self.folder.path
        changes: list[str] = []
        history: list[dict[str, Any]] = []
        if point is not None:
            changes = self.restore(point, allow_changes=allow_changes)
            if self.epoch > self.config.last_epoch:
                raise ConfigError(
                    f"{out} is at epoch {self.epoch}: {self.config.epochs} epochs (and "
                    f"{self.config.continue_epochs} continued) would train nothing and record a "
                    f"shorter run; give --epochs {self.epoch - self.config.continue_epochs} or more"
                )
            history = folder.history_until(self.epoch)
            if self._finished():
                self._say(
                    f"{out} is complete (epoch {self.epoch} of {self.config.last_epoch}, step "
                    f"{self.global_step}): nothing to train."
                )
                return history
            self._say(f"Resuming {out} from epoch {self.epoch} (step {self.global_step}).")
        else:
            folder.check_empty()
        folder.begin(history, self.config, self._segment(changes))
        self._say("### Training... ###")
        while not self._finished():
            epoch = self.epoch + 1
            continued = self.loader.continued(epoch)
            if continued and epoch == self.config.epochs + 1:
                self._say(
                    f"### Training... ### (continued on all {self.loader.n_all} training images)"
                )
            per_epoch = epoch_steps(self.config, self.loader.images(epoch), self.dist.world_size)
            steps = min(per_epoch, self.total_steps - self.global_step)
            start = time.perf_counter()
            train_loss, train_acc, images, last_batch_loss = self.train_epoch(epoch, steps)
            train_seconds = time.perf_counter() - start
            self.epoch = epoch
            if not folder.writes:
                continue
            # The continuation trains on the validation images: validating them means nothing.
            validated = len(self.loader.y_valid) and not continued
            valid_loss, valid_acc = (
                self.evaluate(self.loader.x_valid, self.loader.y_valid)
                if validated
                else (None, None)
            )
            seconds = time.perf_counter() - start
            record = {
                "epoch": epoch,
                "step": self.global_step,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "last_batch_loss": last_batch_loss,
                "valid_loss": valid_loss,
                "valid_acc": valid_acc,
                # The learning rate the next step will take.
                "next_lr": get_lr(self.config, self.global_step, self.total_steps),
                "seconds": seconds,  # the whole epoch, validation included
                "train_seconds": train_seconds,
                "images_per_s": images / train_seconds,  # training only
            }
            history.append(record)
            # The seed's line, whose "Loss" was its epoch's last mini-batch loss.
            self._say(f"Epoch {epoch} Loss {last_batch_loss:.6f} Duration {seconds:.3f} seconds.")
            if folder.save_epoch(record, self.state, final=self._finished()):
                self._say("Checkpoint has been created.")
        return history

    def _segment(self, changes: list[str]) -> dict[str, Any]:
        """provenance.json's record of this process's part of the run."""
        return {
            "started": now(),
            "from_epoch": self.epoch,
            "from_step": self.global_step,
            "config_hash": self.config.config_hash(),
            "config_changes": changes,
            "code": code_version(),
            "code_digest": self.code_digest,
            "machine": machine(self.device),
            "data": str(self.config.data),
            "data_path": str(Path(self.config.data).resolve()),
            "data_md5": self.splits.source_md5,
            "world_size": self.dist.world_size,
        }

    def train_epoch(self, epoch: int, steps: int) -> tuple[float, float, int, float]:
        """``steps`` optimizer steps of epoch ``epoch`` (the loader's batches of its images);
        returns the mean loss, the accuracy, the number of images seen and the last step's
        loss (what the seed logged as an epoch's "Loss")."""
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        last_sum, last_seen = torch.zeros((), device=self.device), 0
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        step = torch.full((), self.global_step, device=self.device, dtype=torch.long)
        bad_step = torch.full((), -1, device=self.device, dtype=torch.long)
        seen = 0
        bar = tqdm(total=steps, desc=f"epoch {epoch}", leave=False, disable=self.tqdm_disable())
        started = time.perf_counter()
        for b, (x, y, loss_weight) in enumerate(self.loader.batches(epoch, steps)):
            if b == ESTIMATE_AFTER and self.global_step == ESTIMATE_AFTER:
                self._estimate_duration(time.perf_counter() - started)
            loss, logits = self.train_step(x, y, loss_weight)
            step += 1
            bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss), step, bad_step)
            last_sum, last_seen = loss.detach().float() * len(y), len(y)
            loss_sum += last_sum
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            bar.update()
        bar.close()
        totals = torch.stack(
            [
                loss_sum,
                correct.to(loss_sum.dtype),
                torch.tensor(float(seen), device=self.device),
                last_sum,
                torch.tensor(float(last_seen), device=self.device),
            ]
        )
        loss_sum, correct, total, last_sum, last_seen = self.dist.sum(totals)
        bad_step = self.dist.max(bad_step)
        if int(bad_step) >= 0:
            raise TrainingError(
                f"loss became NaN/inf at epoch {epoch}, step {int(bad_step)}; the last good "
                f"checkpoint is {self.folder.last} (epoch {self.epoch})"
                if self.epoch
                else f"loss became NaN/inf at epoch {epoch}, step {int(bad_step)}, before any "
                "checkpoint was written; lower --lr or check the data"
            )
        mean_loss, accuracy = float(loss_sum) / float(total), float(correct) / float(total)
        return mean_loss, accuracy, int(total), float(last_sum) / float(last_seen)

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
        micro = list(self.geometry.micro_batches(x, y, loss_weight))
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

    def _estimate_duration(self, seconds: float) -> None:
        """On a CPU, say early how long the whole run will take: a full-size grid there is
        days of work, better known after seconds than after hours."""
        if self.device.type != "cpu":
            return
        per_step = seconds / ESTIMATE_AFTER
        total = per_step * self.total_steps
        duration = f"{total / 3600:.1f} h" if total >= 3600 else f"{total / 60:.1f} min"
        self._say(
            f"Expected duration on CPU: {duration} for {self.total_steps} steps "
            f"({self.config.batch_size / per_step:.0f} images/s over the first "
            f"{ESTIMATE_AFTER} steps)."
        )

    def tqdm_disable(self) -> bool | None:
        # None lets tqdm decide: quiet when stderr is not a TTY.
        return None if self.progress is None else not self.progress

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """Mean loss and accuracy of the current weights on uint8 images ``x``."""
        return evaluate_model(self.eval_net, x, y, self.config, self.loader.normalize)

    def _say(self, line: str) -> None:
        # The seed's progress lines, once per job: rank 0 alone speaks.
        if self.dist.is_main:
            log.info(line)


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
