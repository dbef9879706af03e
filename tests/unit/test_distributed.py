"""DistributedDataParallel on CPU: gloo, 2 processes on loopback, spawned by the tests."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

from resnet_repro.archive_writer import write_fake_cifar10
from resnet_repro.checkpoint import load_checkpoint
from resnet_repro.config import ConfigError, make_config
from resnet_repro.distributed import Distributed
from resnet_repro.image_utils import draw_crop_flip
from resnet_repro.optim import set_lr
from resnet_repro.schedule import get_lr, steps_per_epoch
from resnet_repro.train import Trainer

pytestmark = pytest.mark.skipif(not torch_dist.is_available(), reason="no torch.distributed")

WORLD = 2
# Per-step agreement with a single process over the same global batches: float32 sums in
# another order (gloo all-reduce vs one backward), a few ulps per step.
TOLERANCE = 1e-5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_config(archive, **overrides):
    values = {
        "version": 1,
        "resnet_size": 1,
        "epochs": 1,
        # 31 does not divide among 2 ranks (15 + 16), nor does the epoch's last batch of 5
        # (2 + 3): the loss weighting of uneven shards is exercised.
        "batch_size": 31,
        "bn_group_images": 0,
        "lr": 0.05,
        "data": str(archive),
        "valid_fraction": 0.2,
        "device": "cpu",
        "checkpoint_every": 1,
        "milestones": [10_000],
    }
    values.update(overrides)
    return make_config("paper", **values)


def weights(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _rank_main(rank, port, archive, out, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch_dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    config = tiny_config(archive)
    trainer = Trainer(config, out, progress=False, dist=Distributed(rank, WORLD, rank))
    mismatches = []

    def compare_ranks(optimizer, args, kwargs):
        mine = weights(trainer.model)
        gathered = [torch.empty_like(mine) for _ in range(WORLD)]
        torch_dist.all_gather(gathered, mine)
        if not all(torch.equal(g, gathered[0]) for g in gathered):
            mismatches.append(trainer.global_step)

    trainer.optimizer.register_step_post_hook(compare_ranks)
    trainer.fit()
    steps = trainer.global_step
    torch_dist.destroy_process_group()
    if rank == 0:
        reference = single_process_reference(config, out.parent / "reference", steps)
        diff = (weights(trainer.model) - weights(reference.model)).abs().max().item()
        results.write_text(json.dumps({"mismatches": mismatches, "steps": steps, "diff": diff}))


def single_process_reference(config, out, steps):
    """One process, the same global batches and draws, each batch's gradient accumulated
    over the ranks' slices (what DDP computes with per-rank BN)."""
    ref = Trainer(config, out, progress=False, dist=Distributed())
    ref.model.train()
    loader = ref.loader
    order = torch.randperm(loader.n_train, generator=loader.order_gen)
    bs = config.batch_size
    for b in range(steps):
        batch = order[b * bs : (b + 1) * bs]
        offsets, flips = draw_crop_flip(len(batch), loader.augment_gen)
        set_lr(ref.optimizer, get_lr(config, b, ref.total_steps))
        ref.optimizer.zero_grad()
        for rank in range(WORLD):
            shard = Distributed(rank, WORLD).shard(len(batch))
            idx = batch[shard]
            x = loader.normalize.train_input(loader.x_train[idx], offsets[shard], flips[shard])
            loss = ref.loss_fn(ref.model(x), loader.y_train[idx]) * (len(idx) / len(batch))
            loss.backward()
        ref.optimizer.step()
    return ref


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    path = tmp_path_factory.mktemp("ddp") / "fake.tar.gz"
    return write_fake_cifar10(path, train_per_batch=40, test_size=20, seed=0)


@pytest.mark.slow
def test_two_ranks_agree_every_step_and_match_one_process(archive, tmp_path):
    results = tmp_path / "results.json"
    mp.spawn(_rank_main, args=(free_port(), archive, tmp_path / "run", results), nprocs=WORLD)
    outcome = json.loads(results.read_text())
    config = tiny_config(archive)
    assert outcome["steps"] == steps_per_epoch(160, config.batch_size, WORLD) == 6
    assert Distributed(0, WORLD).shard(31) == slice(0, 15)
    assert Distributed(0, WORLD).shard(5) == slice(0, 2)
    assert outcome["mismatches"] == []
    assert outcome["diff"] < TOLERANCE
    assert (tmp_path / "run" / "last.ckpt").is_file()


def _rank_fit(rank, port, archive, out, overrides):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch_dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    config = tiny_config(archive, **overrides)
    Trainer(config, out, progress=False, dist=Distributed(rank, WORLD, rank)).fit()
    torch_dist.destroy_process_group()


GROUPED = {"batch_size": 32, "bn_group_images": 16}


@pytest.mark.slow
def test_a_bn_group_is_the_same_images_on_one_process_and_on_two(archive, tmp_path):
    """The paper recipe's BN group is a number of images (64 there, 16 here), not a share of
    each process's batch: one process forwarding 2 groups of 16 and two processes of 16 images
    each train the same weights (to float tolerance: gloo sums in another order). Planted bug:
    a group taken as a share per process (2 groups on each rank, of 8) fails this."""
    mp.spawn(_rank_fit, args=(free_port(), archive, tmp_path / "two", GROUPED), nprocs=WORLD)
    config = tiny_config(archive, **GROUPED)
    one = Trainer(config, tmp_path / "one", progress=False, dist=Distributed())
    assert one.loader.geometry.groups(32) == 2
    one.fit()
    two = load_checkpoint(tmp_path / "two" / "last.ckpt")["model"]
    ungrouped = Trainer(tiny_config(archive, batch_size=32), tmp_path / "plain", progress=False)
    ungrouped.fit()
    # The weights; not the BN running statistics, which rank 0 moves by its own group only
    # and one process by both groups in turn (evaluation uses them, training does not).
    for name, value in one.model.named_parameters():
        torch.testing.assert_close(two[name], value.detach(), rtol=0, atol=1e-4, msg=name)
    plain = dict(ungrouped.model.named_parameters())
    assert max((plain[k].detach() - two[k]).abs().max() for k in plain) > 1e-3


def test_a_bn_group_larger_than_each_process_share_is_refused(archive, tmp_path):
    config = tiny_config(archive, batch_size=32, bn_group_images=32)
    with pytest.raises(ConfigError, match=r"^bn_group_images 32: 2 processes share batch_size "):
        Trainer(config, tmp_path / "r", progress=False, dist=Distributed(0, 2, 0))
    with pytest.raises(ConfigError, match=r"^sync_bn normalizes over all ranks' batch_size imag"):
        tiny_config(archive, batch_size=32, bn_group_images=16, sync_bn=True)
    # sync_bn with the whole batch (bn_group_images 0) is what it always was.
    assert tiny_config(archive, bn_group_images=0, sync_bn=True).sync_bn


def cli(*args, torchrun=0, env=None, **kwargs):
    prefix = [sys.executable]
    if torchrun:
        prefix += [
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={torchrun}",
            "--master_addr=127.0.0.1",
            f"--master_port={free_port()}",
        ]
    return [*prefix, "-m", "resnet_repro", "train", *args]


def train_args(archive, out, epochs):
    return [
        "--resnet-version",
        "1",
        "--resnet-size",
        "1",
        "--epochs",
        str(epochs),
        "--batch-size",
        "32",
        "--data",
        str(archive),
        "--valid-fraction",
        "0.2",
        "--device",
        "cpu",
        "--checkpoint-every",
        "1",
        "--out",
        str(out),
    ]


@pytest.mark.slow
def test_sync_bn_with_bn_groups_is_refused_in_one_line_on_two_ranks(archive, tmp_path):
    """SyncBatchNorm would normalize over both ranks' images, not groups of bn_group_images:
    torchrun with two ranks refuses it before any training, in one line per rank."""
    args = train_args(archive, tmp_path / "run", 1)
    args += ["--recipe", "paper", "--bn-group-images", "16", "--sync-bn"]
    done = subprocess.run(cli(*args, torchrun=2), capture_output=True, text=True)
    assert done.returncode != 0
    assert "resnet-repro train: error: sync_bn normalizes over all ranks'" in done.stderr
    assert not (tmp_path / "run" / "last.ckpt").exists()


def state_hash(path):
    state = load_checkpoint(path)["model"]
    return [state[k].numpy().tobytes() for k in sorted(state)]


@pytest.mark.slow
def test_world_size_one_is_the_plain_path(archive, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # what torchrun sets for its workers
    subprocess.run(
        cli(*train_args(archive, tmp_path / "plain", 2)), check=True, env=env, capture_output=True
    )
    subprocess.run(
        cli(*train_args(archive, tmp_path / "one", 2), torchrun=1),
        check=True,
        env=env,
        capture_output=True,
    )
    assert state_hash(tmp_path / "plain/last.ckpt") == state_hash(tmp_path / "one/last.ckpt")


@pytest.mark.slow
def test_resume_a_two_rank_run_with_one_rank(archive, tmp_path):
    run = tmp_path / "run"
    subprocess.run(cli(*train_args(archive, run, 1), torchrun=2), check=True, capture_output=True)
    subprocess.run(cli(*train_args(archive, run, 2), "--resume"), check=True, capture_output=True)
    segments = json.loads((run / "provenance.json").read_text())["segments"]
    assert [(s["world_size"], s["from_epoch"]) for s in segments] == [(2, 0), (1, 1)]
    epochs = [json.loads(x)["epoch"] for x in (run / "history.jsonl").read_text().splitlines()]
    assert epochs == [1, 2] and load_checkpoint(run / "last.ckpt")["epoch"] == 2
    # The one-rank epoch 2 continued the two-rank state (weights moved from epoch 1's), and
    # did so deterministically: resuming the same epoch-1 checkpoint again gives equal weights.
    assert state_hash(run / "model-1.ckpt") != state_hash(run / "model-2.ckpt")
    again = tmp_path / "again"
    again.mkdir()
    for name in ("last.ckpt", "model-1.ckpt", "config.yaml", "history.jsonl"):
        source = run / ("model-1.ckpt" if name == "last.ckpt" else name)
        (again / name).write_bytes(source.read_bytes())
    subprocess.run(cli(*train_args(archive, again, 2), "--resume"), check=True, capture_output=True)
    assert state_hash(again / "last.ckpt") == state_hash(run / "last.ckpt")


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_a_killed_rank_stops_the_run_and_keeps_the_checkpoint(tmp_path):
    archive = write_fake_cifar10(tmp_path / "f.tar.gz", train_per_batch=200, test_size=20, seed=0)
    run = tmp_path / "run"
    proc = subprocess.Popen(
        cli(*train_args(archive, run, 50), torchrun=2),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 300
    while not (run / "model-1.ckpt").exists() and time.time() < deadline:
        time.sleep(0.05)
    workers = children(proc.pid)
    assert len(workers) == WORLD
    os.kill(workers[1], signal.SIGKILL)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert "Signal 9 (SIGKILL)" in output or "SIGKILL" in output, output[-2000:]
    state = load_checkpoint(run / "last.ckpt")
    assert 1 <= state["epoch"] < 50
    assert not list(run.glob(".*.tmp"))
