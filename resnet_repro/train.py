"""The training engine: seeded, resumable, recipe-driven training of one run.

A run directory holds ``config.yaml`` (the resolved ``TrainConfig``), ``provenance.json``
(package, git commit, torch/CUDA versions, device, data md5, config hash), ``history.jsonl``
(one line per epoch), ``model-{epoch}.ckpt`` every ``checkpoint_every`` epochs and
``last.ckpt`` after every epoch.

Design choices:

* The data set lives on the device as uint8; each step gathers a batch, augments it with
  the same crop-and-flip as ``augment_batch`` and standardizes it there. No per-image
  Python, no worker processes.
* One ``seed`` decides everything random, through three generators derived from it: model
  init, data order (CPU) and augmentation (on the device). The global RNG is never used, and
  every generator state goes into the checkpoint, so a resumed run continues the same streams.
* The loss is checked for NaN/inf on the device every step and read back once per epoch, so
  the loop never waits on the device mid-epoch.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from resnet_repro import __version__
from resnet_repro.atomic import write_atomic
from resnet_repro.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from resnet_repro.config import ConfigError, TrainConfig
from resnet_repro.data import BATCH_DIR, DataError, load_cifar10_with_md5, train_valid_split
from resnet_repro.image_utils import crop_flip_unchecked, draw_crop_flip, standardize
from resnet_repro.net import ResNet

log = logging.getLogger(__name__)

ESTIMATE_AFTER = 10  # steps timed before the expected duration of a CPU run is printed
ARCHITECTURE_FIELDS = ("version", "resnet_size", "num_classes", "first_num_filters")


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became NaN); the last good checkpoint is kept."""


@dataclass
class Splits:
    """uint8 images ``[N, 3072]`` and int64 labels of each split, and the source's md5."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source_md5: str


def load_splits(config: TrainConfig) -> Splits:
    """Load the data the config names and split off validation (seed: first 45k train)."""
    source = Path(config.data)
    cache = config.cache_dir or None
    if cache is None and source.is_dir():
        root = source if (source / BATCH_DIR).is_dir() else source.parent
        cache = root / "npy-cache"
    (x, y, x_test, y_test), md5 = load_cifar10_with_md5(source, cache_dir=cache)
    if config.valid_fraction > 0:
        split = train_valid_split(x, y, None, valid_fraction=config.valid_fraction)
    else:
        if config.split_index >= len(x):
            raise ConfigError(
                f"split_index {config.split_index} leaves no validation data among {len(x)} "
                f"training images of {source}; set valid_fraction (e.g. 0.1) for a small data set"
            )
        split = train_valid_split(x, y, config.split_index)
    return Splits(*split, np.asarray(x_test), np.asarray(y_test), md5)


def to_device(x: np.ndarray, y: np.ndarray, device: torch.device) -> tuple[Tensor, Tensor]:
    """uint8 rows ``[N, 3072]`` as images ``[N, 3, 32, 32]`` and int64 labels on ``device``.
    ``np.array`` copies a read-only memory-mapped cache into writable memory torch accepts."""
    return (
        torch.from_numpy(np.array(x)).view(-1, 3, 32, 32).to(device),
        torch.from_numpy(np.array(y)).to(device),
    )


def resolve_device(name: str) -> torch.device:
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


def stream_seed(seed: int, stream: str) -> int:
    """An independent 63-bit seed per named random stream of a run."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{stream}".encode()).digest()[:8], "little") >> 1


def lr_factor(config: TrainConfig, step: int, total_steps: int) -> float:
    """Multiplier on ``config.lr`` for the optimizer step ``step`` (0-based)."""
    if config.schedule == "constant":
        return 1.0
    if config.schedule == "multistep":
        if step < config.warmup_iters:
            return config.warmup_lr / config.lr
        return config.lr_decay ** sum(step >= m for m in config.milestones)
    progress = step / max(total_steps, 1)
    if config.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    # onecycle: linear ramp 0.1 -> 1 over the first 20% of steps, then linear decay to 0.
    if progress < 0.2:
        return 0.1 + 0.9 * progress / 0.2
    return max(0.0, (1.0 - progress) / 0.8)


def steps_per_epoch(n_train: int, batch_size: int, world_size: int = 1) -> int:
    """Full batches plus the remainder, unless the remainder would leave a rank fewer than two
    images (BN cannot train on a batch of one)."""
    full, rest = divmod(n_train, batch_size)
    return full + (rest >= 2 * world_size)


def total_steps(config: TrainConfig, n_train: int, world_size: int = 1) -> int:
    steps = config.epochs * steps_per_epoch(n_train, config.batch_size, world_size)
    return min(steps, config.max_iters) if config.max_iters else steps


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 when run directly).

    Scaling rule: the global batch is ``config.batch_size`` whatever the world size; each rank
    takes a contiguous 1/world_size slice of every global batch of the epoch's permutation, and
    the learning rate follows the config unchanged. Data order and augmentation draws are the
    same for any world size; BN statistics are per rank (or synchronized with ``sync_bn`` on
    CUDA) and the gradient reduction order differs, so runs with different world sizes agree
    to float tolerance per step, not bitwise.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Distributed:
        return cls(
            int(os.environ.get("RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)),
        )

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        return slice(self.rank * n // self.world_size, (self.rank + 1) * n // self.world_size)


def provenance(config: TrainConfig, device: torch.device, data_md5: str) -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "package_version": __version__,
        "git_commit": commit,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "data_md5": data_md5,
        "config_hash": config.config_hash(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


@contextlib.contextmanager
def run_folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` while a run writes it: a second training process
    into the same folder would interleave its history and checkpoints with the first's. The
    operating system releases the lock when the process dies, so a killed run leaves none."""
    with open(folder / ".lock", "a+") as f:
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


def compiled(module: nn.Module) -> nn.Module:
    """``torch.compile`` with static shapes. With automatic dynamic shapes the kernels a batch
    size gets depend on which sizes the process saw before (the epoch's last, smaller batch
    turns the batch dimension dynamic), so a resumed process would compute with other kernels
    than an uninterrupted one; static shapes make each size's kernels independent of history."""
    return torch.compile(module, dynamic=False)


def code_digest() -> str:
    """sha256 over this package's source files: the code a checkpoint was trained with, so a
    pipeline stage continues an interrupted run only with the same code."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def set_deterministic() -> None:
    """Deterministic kernels on CUDA. What still varies: results differ across GPU models,
    driver/CUDA/cuDNN and torch versions, and between CPU and GPU."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


class Trainer:
    """Trains one run described by ``config`` into ``out_dir``."""

    def __init__(
        self,
        config: TrainConfig,
        out_dir: str | os.PathLike,
        *,
        splits: Splits | None = None,
        progress: bool | None = None,
        echo: bool = True,
        dist: Distributed | None = None,
    ) -> None:
        self.config = config.validate()
        self.out_dir = Path(out_dir)
        self.dist = dist if dist is not None else Distributed.from_env()
        self.device = resolve_device(config.device)
        if self.device.type == "cuda" and self.dist.world_size > 1:
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        self.progress = progress
        self.echo = echo and self.dist.is_main
        self.splits = splits if splits is not None else load_splits(config)
        self._check_data()
        if config.deterministic:
            set_deterministic()

        gen = torch.Generator().manual_seed(stream_seed(config.seed, "init"))
        self.model = ResNet(
            config.version,
            config.resnet_size,
            num_classes=config.num_classes,
            first_num_filters=config.first_num_filters,
            bn_momentum=config.bn_momentum,
            generator=gen,
        ).to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # Evaluation runs on rank 0 alone, so it must not go through DDP's collectives.
        self.eval_forward = compiled(self.model) if config.compile else self.model
        self.forward = self.eval_forward
        if self.dist.world_size > 1:
            ddp = self._wrap_distributed()
            self.forward = compiled(ddp) if config.compile else ddp
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.order_gen = torch.Generator().manual_seed(stream_seed(config.seed, "order"))
        self.augment_gen = torch.Generator(device=self.device).manual_seed(
            stream_seed(config.seed, "augment")
        )
        self.optimizer = self._make_optimizer()
        # The code this process imported: hashed once, recorded in every checkpoint.
        self.code_digest = code_digest()
        self.n_train = len(self.splits.y_train)
        self.total_steps = total_steps(config, self.n_train, self.dist.world_size)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(config, step, self.total_steps)
        )
        self.epoch = 0
        self.global_step = 0
        s = self.splits
        self.x_train, self.y_train = to_device(s.x_train, s.y_train, self.device)
        self.x_valid, self.y_valid = to_device(s.x_valid, s.y_valid, self.device)

    def _wrap_distributed(self) -> nn.Module:
        import torch.distributed as torch_dist
        from torch.nn.parallel import DistributedDataParallel

        if not torch_dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            torch_dist.init_process_group(backend)
        if self.config.sync_bn:
            if self.device.type != "cuda":
                raise ConfigError("sync_bn needs CUDA: torch's SyncBatchNorm does not run on CPU")
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=device_ids)

    def _check_data(self) -> None:
        s, c = self.splits, self.config
        if len(s.y_train) == 0:
            raise DataError("the training set is empty")
        if c.batch_size > len(s.y_train):
            raise ConfigError(
                f"batch_size {c.batch_size} is larger than the training set ({len(s.y_train)} "
                "images)"
            )
        for name, y in (("train", s.y_train), ("valid", s.y_valid), ("test", s.y_test)):
            if len(y) and (y.min() < 0 or y.max() >= c.num_classes):
                raise DataError(
                    f"{name} labels span {y.min()}..{y.max()}, outside 0..{c.num_classes - 1}"
                )

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        if c.optimizer == "adam":
            return torch.optim.Adam(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        return torch.optim.SGD(
            self.model.parameters(),
            lr=c.lr,
            momentum=c.momentum,
            weight_decay=c.weight_decay,
            nesterov=c.nesterov,
        )

    # -- checkpoints -------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "rng": {
                "order": self.order_gen.get_state(),
                "augment": self.augment_gen.get_state().cpu(),
            },
            "config": self.config.to_dict(),
            "package_version": __version__,
            "code_digest": self.code_digest,
            "data_md5": self.splits.source_md5,
            # CPU and CUDA generators are different streams: a run resumes on its device type.
            "device_type": self.device.type,
        }

    def restore(self, path: Path) -> None:
        state = load_checkpoint(path)
        check_architecture(state, self.config, path)
        saved_device = state.get("device_type", "cpu")
        if saved_device != self.device.type:
            raise CheckpointError(
                f"{path}: written by a run on {saved_device}, but this run is on "
                f"{self.device.type}; the augmentation's random stream differs between device "
                f"types, so the run cannot continue bitwise here. Resume with --device "
                f"{saved_device}, or start a new run in another folder"
            )
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.order_gen.set_state(state["rng"]["order"])
            # Every generator, a CUDA one included, takes its state as a CPU ByteTensor.
            self.augment_gen.set_state(state["rng"]["augment"].cpu())
        except (KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"{path}: does not fit this run ({e})") from e
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])

    # -- the loop ----------------------------------------------------------------------------

    def run(self, *, resume: bool = False) -> list[dict[str, Any]]:
        """Train to ``config.epochs`` (or ``max_iters``); returns the history."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        # Rank 0 writes the folder, so it alone holds the lock.
        with run_folder_lock(self.out_dir) if self.dist.is_main else contextlib.nullcontext():
            return self._run(resume=resume)

    def _run(self, *, resume: bool) -> list[dict[str, Any]]:
        out = self.out_dir
        last = out / "last.ckpt"
        history_path = out / "history.jsonl"
        if resume and last.exists():
            self.restore(last)
            history = [h for h in read_history(history_path) if h["epoch"] <= self.epoch]
            self._say(f"Resuming {out} from epoch {self.epoch} (step {self.global_step}).")
        elif last.exists() or any(out.glob("model-*.ckpt")):
            raise ConfigError(
                f"{out} already holds checkpoints; pass --resume to continue it or choose "
                "another output folder"
            )
        else:
            history = []
        main = self.dist.is_main  # rank 0 alone writes files
        if main:
            write_history(history_path, history)
            self.config.save(out / "config.yaml")
            prov = provenance(self.config, self.device, self.splits.source_md5)
            prov["world_size"] = self.dist.world_size
            (out / "provenance.json").write_text(json.dumps(prov, indent=2))
        self._say("### Training... ###")
        per_epoch = steps_per_epoch(self.n_train, self.config.batch_size, self.dist.world_size)
        while self.epoch < self.config.epochs and self.global_step < self.total_steps:
            epoch = self.epoch + 1
            steps = min(per_epoch, self.total_steps - self.global_step)
            start = time.perf_counter()
            train_loss, train_acc, images = self._train_epoch(epoch, steps)
            self.epoch = epoch
            if not main:
                continue
            valid_loss, valid_acc = self.evaluate(self.x_valid, self.y_valid)
            seconds = time.perf_counter() - start
            record = {
                "epoch": epoch,
                "step": self.global_step,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "valid_loss": valid_loss,
                "valid_acc": valid_acc,
                "lr": self.optimizer.param_groups[0]["lr"],
                "seconds": seconds,
                "images_per_s": images / seconds,
            }
            history.append(record)
            # History, then the epoch's checkpoint, then last.ckpt: a kill between any two
            # leaves last.ckpt at the previous epoch, and the resume redoes this epoch, rewriting
            # the history line and the epoch's checkpoint (bitwise the same), so none is lost.
            append_history(history_path, record)
            self._say(f"Epoch {epoch} Loss {train_loss:.6f} Duration {seconds:.3f} seconds.")
            finished = self.epoch >= self.config.epochs or self.global_step >= self.total_steps
            state = self.state()
            if epoch % self.config.checkpoint_every == 0 or finished:
                save_checkpoint(out / f"model-{epoch}.ckpt", state)
                self._say("Checkpoint has been created.")
            save_checkpoint(last, state)
        return history

    def _train_epoch(self, epoch: int, steps: int) -> tuple[float, float, int]:
        self.model.train()
        bs, world = self.config.batch_size, self.dist.world_size
        order = torch.randperm(self.n_train, generator=self.order_gen).to(self.device)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        step = torch.full((), self.global_step, device=self.device, dtype=torch.long)
        bad_step = torch.full((), -1, device=self.device, dtype=torch.long)
        seen = 0
        bar = tqdm(total=steps, desc=f"epoch {epoch}", leave=False, disable=self.progress_off())
        started = time.perf_counter()
        for b in range(steps):
            if b == ESTIMATE_AFTER and self.global_step == ESTIMATE_AFTER:
                self._estimate_duration(time.perf_counter() - started)
            batch = order[b * bs : (b + 1) * bs]
            # Every rank draws the whole global batch's augmentation, so the draws do not
            # depend on the world size, and keeps its own slice.
            offsets, flips = draw_crop_flip(len(batch), self.augment_gen)
            shard = self.dist.shard(len(batch))
            idx = batch[shard]
            x = standardize(crop_flip_unchecked(self.x_train[idx], offsets[shard], flips[shard]))
            y = self.y_train[idx]
            if self.config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(self.device, self.config.precision):
                logits = self.forward(x)
            loss = self.loss_fn(logits.float(), y)
            self.optimizer.zero_grad(set_to_none=True)
            if world > 1:
                # DDP averages gradients over ranks; weighting each rank's mean by its share
                # of the global batch makes that the global batch's mean gradient.
                (loss * (len(idx) * world / len(batch))).backward()
            else:
                loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            self.global_step += 1
            loss = loss.detach()
            step += 1
            bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss), step, bad_step)
            loss_sum += loss * len(idx)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(idx)
            bar.update()
        bar.close()
        if world > 1:
            import torch.distributed as torch_dist

            totals = torch.stack(
                [
                    loss_sum,
                    correct.to(loss_sum.dtype),
                    torch.tensor(float(seen), device=self.device),
                ]
            )
            torch_dist.all_reduce(totals)
            torch_dist.all_reduce(bad_step, op=torch_dist.ReduceOp.MAX)
            loss_sum, correct, seen = totals[0], totals[1], int(totals[2])
        if int(bad_step) >= 0:
            raise TrainingError(
                f"loss became NaN/inf at epoch {epoch}, step {int(bad_step)}; the last good "
                f"checkpoint is {self.out_dir / 'last.ckpt'} (epoch {self.epoch})"
            )
        return float(loss_sum) / seen, float(correct) / seen, seen

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

    def progress_off(self) -> bool | None:
        # None lets tqdm decide: quiet when stderr is not a TTY.
        return None if self.progress is None else not self.progress

    def evaluate(self, x: Tensor, y: Tensor) -> tuple[float, float]:
        return evaluate_model(self.eval_forward, x, y, self.config)

    def _say(self, line: str) -> None:
        if self.echo:
            print(line, flush=True)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate_model(
    forward: nn.Module, x: Tensor, y: Tensor, config: TrainConfig
) -> tuple[float, float]:
    """Mean loss and accuracy of ``forward`` (a model, compiled or not) in eval mode over
    uint8 images ``x`` on the device, standardized but not augmented."""
    forward.eval()
    if len(y) == 0:
        return float("nan"), float("nan")
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for start in range(0, len(y), config.eval_batch_size):
        xb = standardize(x[start : start + config.eval_batch_size])
        if config.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        yb = y[start : start + config.eval_batch_size]
        with autocast(x.device, config.precision):
            logits = forward(xb).float()
        loss_sum += nn.functional.cross_entropy(logits, yb, reduction="sum")
        correct += (logits.argmax(1) == yb).sum()
    return float(loss_sum) / len(y), float(correct) / len(y)


def check_architecture(state: dict[str, Any], config: TrainConfig, path: Path) -> None:
    saved = state["config"]
    diff = [
        f"{k} {saved.get(k)!r} (checkpoint) vs {getattr(config, k)!r} (run)"
        for k in ARCHITECTURE_FIELDS
        if saved.get(k) != getattr(config, k)
    ]
    if diff:
        raise CheckpointError(f"{path}: checkpoint of another architecture: {'; '.join(diff)}")


def read_history(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(h) + "\n" for h in history)
    write_atomic(path, lambda f: f.write(text.encode()))


def append_history(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def train(
    config: TrainConfig, out_dir: str | os.PathLike, *, resume: bool = False, **kwargs: Any
) -> list[dict[str, Any]]:
    """Build a ``Trainer`` and run it; the library's one-call entry point."""
    if resume:
        last = Path(out_dir) / "last.ckpt"
        if last.exists():  # fail on a foreign checkpoint before loading any data
            check_architecture(load_checkpoint(last), config, last)
    return Trainer(config, out_dir, **kwargs).run(resume=resume)
